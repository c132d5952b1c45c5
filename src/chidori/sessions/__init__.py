"""Livy interactive sessions: the relay between the store and session drivers."""
