"""Share links: signed, expiring, revocable, read-only URLs to one job or one dataset's
history, that open without any login."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta

from chidori.domain.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated
from chidori.domain.identity import Role
from chidori.domain.records import Job, Share
from chidori.security.signing import BadSignature, Signer
from chidori.services.identity import Actor, IdentityService
from chidori.services.jobs import JobService
from chidori.store.shares import ShareStore

SHARE_PURPOSE = "share"
DEFAULT_SHARE_SECONDS = 7 * 86400.0
MAX_SHARE_SECONDS = 90 * 86400.0


class ShareRefused(Exception):
    """A share link that is tampered with, expired or revoked. Says nothing more."""


@dataclass(frozen=True)
class IssuedShare:
    share: Share
    path: str  # /s/TOKEN


class ShareService:
    def __init__(
        self, store: ShareStore, signer: Signer, jobs: JobService, identity: IdentityService
    ) -> None:
        self._store = store
        self._signer = signer
        self._jobs = jobs
        self._identity = identity

    def _issue(self, share: Share) -> IssuedShare:
        ttl = (share.expires_at - self._store.now()).total_seconds()
        token = self._signer.sign(SHARE_PURPOSE, {"s": share.id}, ttl)
        return IssuedShare(share, f"/s/{token}")

    @staticmethod
    def _lifetime(expires_in: float | None) -> timedelta:
        seconds = DEFAULT_SHARE_SECONDS if expires_in is None else expires_in
        if not 0 < seconds <= MAX_SHARE_SECONDS:
            raise InvalidRequest.for_field("expires_in", "between 1 s and 90 days")
        return timedelta(seconds=seconds)

    def share_job(self, actor: Actor, job_id: int, expires_in: float | None) -> IssuedShare:
        """A link to one job (its page, events and driver log). Anyone who may see the job
        may share it."""
        self._jobs.get(actor, job_id)
        share = self._store.create(
            "job", actor.name, self._store.now() + self._lifetime(expires_in), job_id=job_id
        )
        self._identity.record(actor, "share.create", f"job/{job_id}", {"share": share.id})
        return self._issue(share)

    def share_dataset(
        self, actor: Actor, schema_name: str, table_name: str, expires_in: float | None
    ) -> IssuedShare:
        """A link to the run history of one dataset (schema + table)."""
        share = self._store.create(
            "dataset",
            actor.name,
            self._store.now() + self._lifetime(expires_in),
            schema_name=schema_name,
            table_name=table_name,
        )
        self._identity.record(
            actor, "share.create", f"dataset/{schema_name}.{table_name}", {"share": share.id}
        )
        return self._issue(share)

    def list(self, actor: Actor) -> list[Share]:
        return self._store.list(None if actor.principal.is_admin else actor.name)

    def revoke(self, actor: Actor, share_id: int) -> Share:
        share = self._store.get(share_id)
        if share.created_by != actor.name and not actor.principal.is_admin:
            raise NotFound(f"share {share_id} not found")
        if actor.principal.role is Role.VIEWER and share.created_by != actor.name:
            raise Forbidden("viewers may only revoke their own links")
        revoked = self._store.revoke(share_id)
        self._identity.record(actor, "share.revoke", str(share_id))
        return revoked

    def open(self, token: str) -> Share:
        """The share behind a link; ShareRefused for any link that is not valid now."""
        try:
            payload = self._signer.verify(SHARE_PURPOSE, token)
            share = self._store.get(int(payload["s"]))
        except (BadSignature, KeyError, TypeError, ValueError, NotFound) as exc:
            raise ShareRefused from exc
        now = self._store.now()
        if share.revoked_at is not None or share.expires_at.astimezone(UTC) <= now:
            raise ShareRefused
        return share

    def shared_job(self, share: Share) -> Job:
        """The job a link shows, while its creator may still see it: a link never outlives
        its creator's access (disabled, deleted, moved to another team)."""
        if share.kind != "job" or share.job_id is None:
            raise ShareRefused
        try:
            creator = Actor(self._identity.principal_for(share.created_by), None)
            return self._jobs.get(creator, share.job_id)
        except (NotFound, Unauthenticated, Forbidden) as exc:
            # The store being down is not the link's fault: that still answers 503.
            raise ShareRefused from exc
