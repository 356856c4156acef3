"""What a writer that streams into a file object (pyarrow's ParquetWriter, gzip) asks of it, for
file objects that only take writes: their position is the number of bytes written."""

from __future__ import annotations


class WriteOnly:
    """A write-only, unseekable file object; a subclass writes, adding to ``size``."""

    size = 0
    closed = False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False
