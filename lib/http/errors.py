"""What can go wrong before a full response, and how to say it in a delivery log.

Every failure of an attempt leaves the package as one :class:`TransportError` with a short
message fit for merchants to read; this module turns the exceptions of ``requests``, urllib3,
``http.client``, ``ssl`` and the OS into those messages. It sits at the bottom of the package
(it imports no other module of it) because every other module raises TransportError.
"""

from __future__ import annotations

import errno
import http.client
import ssl

import aiohttp
import aiohttp.http_exceptions
import requests
import urllib3.exceptions


class TransportError(Exception):
    """One error type for everything that went wrong before we had a full response.

    Attributes:
        message: Short, readable cause ("connection refused", "timed out after 30 s"...). It never
            contains the password of the URL.
        status: 408 for a timeout (DealPOS records a timeout as 408), else None.
        permanent: True when retrying cannot help (blocked address, unusable URL); False for
            network errors and timeouts.
    """

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.permanent = permanent


# Checked in order against every exception of the chain; the first match wins.
_ERROR_MESSAGES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (ssl.SSLCertVerificationError, "certificate verify failed"),
    (ConnectionRefusedError, "connection refused"),
    (http.client.RemoteDisconnected, "connection closed by server without a response"),
    (http.client.LineTooLong, "invalid response from server (line too long)"),
    (http.client.BadStatusLine, "invalid response from server (bad status line)"),
    (urllib3.exceptions.InvalidChunkLength, "invalid response from server (bad chunked encoding)"),
    (urllib3.exceptions.DecodeError, "invalid response from server (bad content encoding)"),
    (aiohttp.ServerDisconnectedError, "connection closed by server without a response"),
    (aiohttp.http_exceptions.LineTooLong, "invalid response from server (line too long)"),
    (aiohttp.http_exceptions.BadStatusLine, "invalid response from server (bad status line)"),
    (
        aiohttp.http_exceptions.TransferEncodingError,
        "invalid response from server (bad chunked encoding)",
    ),
    (
        aiohttp.http_exceptions.ContentEncodingError,
        "invalid response from server (bad content encoding)",
    ),
    (aiohttp.ClientPayloadError, "connection closed before the response was complete"),
    (
        (aiohttp.http_exceptions.HttpProcessingError, aiohttp.ClientResponseError),
        "invalid response from server",
    ),
    (http.client.IncompleteRead, "connection closed before the response was complete"),
    (ssl.SSLError, "TLS handshake failed"),
    (
        (ConnectionResetError, ConnectionAbortedError, BrokenPipeError),
        "connection reset",
    ),
)
_ERRNO_MESSAGES = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
}


def translate(exc: Exception, cut_by_deadline: bool, limit: float) -> TransportError:
    """The TransportError for an exception that ended an attempt of ``limit`` seconds.

    A cut by the deadline reads as a timeout whatever the exception it caused.
    """
    chain = _exception_chain(exc)
    if cut_by_deadline or any(_is_timeout(e) for e in chain):
        return timeout_error(limit)
    for kinds, message in _ERROR_MESSAGES:
        if any(isinstance(e, kinds) for e in chain):
            return TransportError(message)
    for e in chain:
        if isinstance(e, OSError) and e.errno in _ERRNO_MESSAGES:
            return TransportError(_ERRNO_MESSAGES[e.errno])
        if isinstance(e, http.client.HTTPException):
            return TransportError(_http_exception_message(e))
    return _fallback_error(chain)


def _fallback_error(chain: list[BaseException]) -> TransportError:
    invalid_url = (
        requests.exceptions.InvalidURL,
        urllib3.exceptions.LocationParseError,
        aiohttp.InvalidURL,
    )
    if any(isinstance(e, invalid_url) for e in chain):
        return TransportError("invalid URL", permanent=True)
    if any(isinstance(e, requests.exceptions.InvalidHeader) for e in chain):
        return TransportError("invalid request header", permanent=True)
    connection_errors = (
        OSError,
        requests.exceptions.ConnectionError,
        aiohttp.ClientConnectionError,
    )
    if any(isinstance(e, connection_errors) for e in chain):
        return TransportError("connection failed")
    return TransportError(f"request failed ({type(chain[0]).__name__})")


def _http_exception_message(exc: http.client.HTTPException) -> str:
    if "headers" in str(exc):
        return "invalid response from server (too many headers)"
    return "invalid response from server"


def _is_timeout(exc: BaseException) -> bool:
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 but is no timeout.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(
        exc,
        (
            TimeoutError,
            urllib3.exceptions.TimeoutError,
            requests.exceptions.Timeout,
            aiohttp.ServerTimeoutError,
        ),
    )


def _exception_chain(exc: BaseException) -> list[BaseException]:
    # requests and urllib3 wrap the real cause in causes, contexts, `reason` or args.
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        pending.extend(e for e in linked if isinstance(e, BaseException))
    return seen


def timeout_error(limit: float) -> TransportError:
    """The one timeout error, with the 408 status DealPOS records for timeouts."""
    return TransportError(f"timed out after {limit:g} s", status=408, permanent=False)
