"""The signing key replicas share when none is configured: made by the first replica that
starts, kept in the database (`settings`), read by the others, so share links and UI sessions
signed by one replica open on every other without CHIDORI_SECRET_KEY."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError

from chidori.store.database import Database
from chidori.store.models import SettingRow

SIGNING_KEY = "signing_key"  # never served by a settings route: those read their own keys


def shared_signing_key(store: Database) -> str:
    for _ in range(3):
        with store.reading() as session:
            row = session.get(SettingRow, SIGNING_KEY)
            if row is not None:
                return str(row.value["key"])
        try:
            with store.writing() as session:
                session.add(
                    SettingRow(
                        key=SIGNING_KEY,
                        value={"key": secrets.token_urlsafe(48)},
                        updated_at=store.now(),
                        updated_by="chidori",
                    )
                )
        except IntegrityError:
            continue  # another replica made it at the same moment: read theirs
    raise RuntimeError("could not agree on a signing key with the other replicas")
