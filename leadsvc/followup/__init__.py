"""Dealer follow-up: response targets in business hours, reminders, moves, figures."""
