"""Helpers the tests share: stores of tiny models, a live server, parity checks, validators."""
