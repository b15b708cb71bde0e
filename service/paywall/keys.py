"""Signing keys for entitlement tokens (ES256), from configuration, with rotation.

The current private key signs; its public key and those of rotated-out keys (kept until their
tokens expire) are published at /.well-known/jwks.json, each with its `kid`.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from ..config import INSTANCE_DIR

ALG = "ES256"


@dataclass(frozen=True)
class KeySet:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_keys: dict[str, ec.EllipticCurvePublicKey]  # kid -> key, current first

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.public_keys.items():
            jwk = json.loads(ECAlgorithm.to_jwk(key))
            jwk.update(kid=kid, use="sig", alg=ALG)
            keys.append(jwk)
        return {"keys": keys}


def _read_pem(value: str) -> bytes:
    value = value.strip()
    if value.startswith("-----BEGIN"):
        return value.replace("\\n", "\n").encode()
    return Path(value).read_bytes()


def thumbprint_kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint, shortened: a stable kid when none is configured."""
    jwk = json.loads(ECAlgorithm.to_jwk(public_key))
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")[:16]


def load_keys(config: dict[str, Any]) -> KeySet:
    private_setting = config.get("PAYWALL_JWT_PRIVATE_KEY") or ""
    if private_setting:
        private_key = serialization.load_pem_private_key(_read_pem(private_setting), password=None)
    else:
        if config["PUBLIC_BASE_URL"].startswith("https://"):
            raise RuntimeError("PAYWALL_JWT_PRIVATE_KEY must be set in production")
        private_key = _development_key()
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
        raise RuntimeError("PAYWALL_JWT_PRIVATE_KEY must be an EC P-256 private key (ES256)")
    kid = config.get("PAYWALL_JWT_KID") or thumbprint_kid(private_key.public_key())
    public_keys: dict[str, ec.EllipticCurvePublicKey] = {kid: private_key.public_key()}
    previous = config.get("PAYWALL_JWT_PREVIOUS_KEYS") or ""
    if previous:
        for old_kid, pem in json.loads(previous).items():
            key = serialization.load_pem_public_key(_read_pem(pem))
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise RuntimeError(f"previous key {old_kid!r} is not an EC public key")
            public_keys.setdefault(old_kid, key)
    return KeySet(kid, private_key, public_keys)


def _development_key() -> ec.EllipticCurvePrivateKey:
    path = INSTANCE_DIR / "paywall_signing_key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def generate_pem() -> tuple[str, str]:
    """A new key pair as PEM (private, public), for `flask paywall keygen`."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public
