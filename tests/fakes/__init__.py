"""Fake chat-platform servers on 127.0.0.1 for end-to-end tests (no internet needed).

- ``tests.fakes.telegram_server.FakeTelegram``: a fake Telegram Bot API that the real
  python-telegram-bot ``Application`` talks to through ``base_url`` / ``base_file_url``.
- ``tests.fakes.discord_server``: the fake Discord REST API and gateway for discord.py.
"""
