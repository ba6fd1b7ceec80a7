"""Who is calling: API keys (stored hashed) from the limits file, else the client address."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dam_common.errors import ConfigError
from dam_ingress.tiers import Tier, parse_tiers

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class Client:
    """An identity with the token bucket it gets, and the tenant whose queue it shares.

    An API key is its own tenant; anonymous clients (one identity per address) share the
    anonymous tenant, or one of a bounded number of hashed buckets of it. Not frozen (built
    per anonymous request, where a frozen __init__ costs several times more); never mutated.
    """

    identity: str
    rate: float
    burst: int
    enforce: bool = True
    tenant: str = "default"
    tier: Tier = field(default_factory=Tier)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key: only its SHA-256 is kept."""

    name: str
    sha256: str
    rate: float
    burst: int
    enforce: bool = True
    tier: Tier = field(default_factory=Tier)


@dataclass(frozen=True, slots=True)
class Anonymous:
    """How clients without a key are limited and grouped."""

    rate: float
    burst: int
    enforce: bool = True
    tier: Tier = field(default_factory=Tier)
    buckets: int = 1  # anonymous tenants: addresses are hashed into this many


class Unauthorized(Exception):
    """Missing or unknown API key (the answer never says which)."""


def hash_key(secret: str) -> str:
    """The form in which API keys are stored in the limits file."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessPolicy:
    """Resolves a request's identity and limits; built once from settings and the limits file."""

    def __init__(self, keys: list[ApiKey], anonymous: Anonymous, trusted: list[IpNetwork],
                 allow_anonymous: bool = False) -> None:
        self._keys = {k.sha256: k for k in keys}
        # Built once per key, not per request: a flood from one key resolves to this object.
        self._clients = {k.sha256: Client(f"key:{k.name}", k.rate, k.burst, k.enforce,
                                          f"key:{k.name}", k.tier) for k in keys}
        self._anonymous = anonymous
        self._trusted = trusted
        self._allow_anonymous = allow_anonymous

    @property
    def requires_key(self) -> bool:
        """With keys configured, every request must present one (unless anonymous allowed)."""
        return bool(self._keys) and not self._allow_anonymous

    def resolve(self, authorization: str | None, peer: str | None,
                forwarded_for: str | None) -> Client:
        """The client behind a request; raises Unauthorized for a missing or unknown key.

        With keys configured, a request without any Authorization header is still served as
        an anonymous client when the limits file says `[anonymous] allowed = true`.
        """
        if self._keys and (authorization or not self._allow_anonymous):
            return self._by_key(authorization)
        address = self.client_address(peer, forwarded_for)
        anon = self._anonymous
        tenant = "anon"
        if anon.buckets > 1:
            tenant = f"anon-{zlib.crc32(address.encode()) % anon.buckets}"
        return Client(f"ip:{address}", anon.rate, anon.burst, anon.enforce, tenant, anon.tier)

    def _by_key(self, authorization: str | None) -> Client:
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthorized
        digest = hash_key(secret.strip())
        key = self._keys.get(digest)
        # The dict lookup is on a hash of the secret; compare in constant time all the same.
        if key is None or not hmac.compare_digest(key.sha256, digest):
            raise Unauthorized
        return self._clients[digest]

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The peer, or the right-most untrusted hop of X-Forwarded-For if the peer is trusted."""
        address = peer or "unknown"
        if not forwarded_for or not self._is_trusted(address):
            return address
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                return hop if _is_ip(hop) else address
            address = hop
        return address

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_trusted(spec: str) -> list[IpNetwork]:
    """`DAM_TRUSTED_PROXIES`: comma-separated addresses or CIDRs."""
    try:
        return [ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()]
    except ValueError as exc:
        raise ConfigError(f"DAM_TRUSTED_PROXIES: {exc}") from exc


def load_policy(path: Path | None, anonymous: Anonymous, key_default: Client,
                trusted: list[IpNetwork]) -> AccessPolicy:
    """Build the policy from the optional TOML limits file (see README, 'Limits file')."""
    if path is None:
        return AccessPolicy([], anonymous, trusted)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"limits file {path}: {exc}") from exc
    tiers = parse_tiers(doc, anonymous.tier)
    anon = doc.get("anonymous", {})
    buckets = anon.get("buckets", anonymous.buckets)
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 1024:
        raise ConfigError("limits file: anonymous.buckets must be an integer from 1 to 1024")
    anonymous = Anonymous(float(anon.get("rate", anonymous.rate)),
                          int(anon.get("burst", anonymous.burst)), _enforce(anon, "anonymous"),
                          _tier(tiers, anon, "anonymous"), buckets)
    keys = [_parse_key(i, item, key_default, tiers)
            for i, item in enumerate(doc.get("keys", []))]
    return AccessPolicy(keys, anonymous, trusted, bool(anon.get("allowed", False)))


def _tier(tiers: dict[str, Tier], section: dict[str, Any], where: str) -> Tier:
    name = section.get("tier", "default")
    if name not in tiers:
        known = ", ".join(sorted(tiers))
        raise ConfigError(f"limits file: {where}: tier '{name}' is not defined (known: {known})")
    return tiers[name]


def _parse_key(index: int, item: dict[str, Any], default: Client,
               tiers: dict[str, Tier]) -> ApiKey:
    where = f"limits file: keys[{index}]"
    name, digest = item.get("name"), str(item.get("key_sha256", "")).lower()
    if (not isinstance(name, str) or not name or not name.isprintable()
            or any(c in name for c in " {}:")):
        raise ConfigError(f"{where}: 'name' must be a non-empty string without spaces, braces "
                          "or colons")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(f"{where}: 'key_sha256' must be the hex SHA-256 of the key "
                          "(dam hash-key KEY prints it)")
    rate, burst = float(item.get("rate", default.rate)), int(item.get("burst", default.burst))
    if rate <= 0 or burst < 1:
        raise ConfigError(f"{where}: rate must be > 0 and burst >= 1")
    return ApiKey(name, digest, rate, burst, _enforce(item, where), _tier(tiers, item, where))


def _enforce(section: dict[str, Any], where: str) -> bool:
    value = section.get("enforce", True)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: 'enforce' must be true or false")
    return value
