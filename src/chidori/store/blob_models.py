"""Tables of the database's shared storage (chidori.storage.blobs.DatabaseBlobs)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from chidori.store.models import Base, UTCDateTime


class BlobRow(Base):
    """One stored object: its key and size (its bytes are in `blob_chunks`)."""

    __tablename__ = "blobs"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BlobChunkRow(Base):
    """Bytes `number * CHUNK_BYTES`.. of an object."""

    __tablename__ = "blob_chunks"

    key: Mapped[str] = mapped_column(
        String(512), ForeignKey("blobs.key", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
