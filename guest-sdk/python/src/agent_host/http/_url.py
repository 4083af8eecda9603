"""Splitting a URL into the parts `wasi:http` wants: scheme, authority and
path-with-query. Deliberately strict: no user info, no whitespace."""

import unicodedata
from dataclasses import dataclass

from wit_world.imports import wasi_http_types as types

from ._errors import InvalidUrl


@dataclass
class Target:
    """A request target split into its `wasi:http` parts."""

    original: str
    scheme: types.Scheme
    authority: str
    path_with_query: str


def parse(url: str) -> Target:
    """Parses `scheme://authority[/path][?query][#fragment]`; the fragment is dropped."""

    def invalid(why: str) -> InvalidUrl:
        return InvalidUrl(f"{url!r}: {why}")

    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
        raise invalid("contains whitespace or control characters")
    scheme_name, sep, rest = url.partition("://")
    if not sep:
        raise invalid("missing scheme://")
    scheme_name = scheme_name.lower()
    if not scheme_name:
        raise invalid("empty scheme")
    scheme = {"http": types.Scheme_Http(), "https": types.Scheme_Https()}.get(
        scheme_name
    ) or types.Scheme_Other(scheme_name)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if not authority:
        raise invalid("missing host")
    if "@" in authority:
        raise invalid("user info in URLs is not supported; send credentials in a header")
    tail = tail.split("#", 1)[0]
    if not tail:
        path_with_query = "/"
    elif tail.startswith("?"):
        path_with_query = "/" + tail
    else:
        path_with_query = tail
    return Target(url, scheme, authority, path_with_query)


def encode_component(s: str) -> str:
    """Percent-encodes `s` for use as one query value or path segment: every
    byte except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes
    `%XX`::

        >>> encode_component('up{job="api"}')
        'up%7Bjob%3D%22api%22%7D'
    """
    unreserved = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(b) if b in unreserved else f"%{b:02X}" for b in s.encode("utf-8"))
