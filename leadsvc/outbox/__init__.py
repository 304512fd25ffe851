"""The outbox: rows that say what must still be sent, written in the transaction that needs them.

`messages` writes rows and moves them through their life cycle; `kinds` is the registry in which
each domain names how a row of its kind is prepared and sent. The jobs package runs rows by kind
through that registry; nothing here talks to Redis or SMTP.
"""
