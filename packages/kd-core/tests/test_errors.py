"""KDError messages: one line, naming the argument, the expected and the received value."""



def test_control_characters_in_an_argument_keep_the_message_on_one_line() -> None:
    from kd_core.errors import ConfigError

    error = ConfigError("a\r\nb", "a key\twith a tab", None, hint="line\nbreak")
    assert len(str(error).splitlines()) == 1 and "a\\r\\nb" in str(error) and error.argument == "a\r\nb"
