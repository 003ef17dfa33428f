"""The command line's parsing: KEY=VALUE overrides among flags, unknown words refused."""

import pytest

from lc0distill.cli import build_parser, main, parse_arguments


@pytest.mark.parametrize("command", ["train", "pbt"])
def test_overrides_may_come_before_between_and_after_the_flags(command):
    argv = [command, "a.b=1", "--config", "r.yaml", "c.d=2", "--fresh", "a.b=3"]
    args = parse_arguments(build_parser(), argv)
    assert args.config == "r.yaml" and args.fresh
    assert args.overrides == ["a.b=1", "c.d=2", "a.b=3"]  # in the order given: the last of a key wins


@pytest.mark.parametrize("argv, word", [
    (["train", "--config", "r.yaml", "a=1", "--frsh"], "--frsh"),  # a misspelt flag is not an override
    (["train", "--config", "r.yaml", "a=1", "--fresh", "steps"], "steps"),  # nor a word without "="
    (["net", "info", "n.pb.gz", "x=1"], "x=1"),  # a command without overrides takes none
])
def test_words_a_command_does_not_know_are_refused(argv, word, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert f"unrecognized arguments: {word}" in capsys.readouterr().err


def test_a_negative_sprt_or_resign_value_may_follow_its_option_as_a_separate_word():
    parser = build_parser()
    apart = parse_arguments(parser, ["match", "a.pt", "b.pt", "--sprt", "-10,10", "--resign", "-600,4"])
    attached = parse_arguments(parser, ["match", "a.pt", "b.pt", "--sprt=-10,10", "--resign=-600,4"])
    assert apart.sprt == attached.sprt == "-10,10" and apart.resign == attached.resign == "-600,4"
    ladder = parse_arguments(parser, ["ladder", "--teacher", "t.pb.gz", "--data", "d", "--held-out", "h",
                                      "--out", "o", "--sprt", "-5,5"])
    assert ladder.sprt == "-5,5"
    with pytest.raises(SystemExit):  # only those options: a word like -5 elsewhere is still an unknown option
        parse_arguments(parser, ["match", "a.pt", "b.pt", "--games", "-5,5"])
