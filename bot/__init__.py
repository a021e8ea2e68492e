"""The application: the `anirec` command, chat adapters and the local web chat."""
