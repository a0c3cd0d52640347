"""
Files served with Range requests as RFC 9110 has them.
"""

from twisted.web import static


class SingleRangeFile(static.File):
    """
    A file whose Range requests are answered as RFC 9110 has them: a
    suffix range longer than the file is the whole file (Twisted's File
    seeks before the file's start instead, and fails with a 500). A Range
    of several parts, or of none, is ignored and the whole file sent, as
    RFC 9110 allows: Twisted's multipart answer sends a part per range
    asked, so overlapping ranges multiply the file, and some leave the
    request hanging with its file open.
    """

    def _parseRangeHeader(self, range):
        ranges = super()._parseRangeHeader(range)
        if len(ranges) != 1:
            raise ValueError("not a single range")
        return ranges

    def _rangeToOffsetAndSize(self, start, end):
        if start is None and end is not None:
            end = min(end, self.getFileSize())
        return super()._rangeToOffsetAndSize(start, end)
