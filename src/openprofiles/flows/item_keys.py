"""How flow_item knows an item: a blind-index digest of its key (flows.checkpoint_store's
docstring), and the digests of a flow's keys kept in the process between the watcher's passes.

An Event flow's check (`flows watch`, every few seconds) looks up every item its source lists
in the flow's checkpoints, by digest: a keyed HMAC of every key, every pass, the largest part
of a pass's CPU beside the listing. A digest is a pure function of the key and the domain's
index key, so the digests of the keys a flow listed last are kept and looked up instead
(`ItemDigests`). Kept per flow only for the keys its latest listing holds (a key gone from the
source is dropped at the next listing), `KEPT_KEYS` in all (the flows checked longest ago
dropped first), until the flow is gone (`drop`), and only under the index key they were made
with: the domain's key is told by a digest of its own (`_fingerprint`), so a domain deleted and
made again under the same name (another key) starts afresh. What is kept decides nothing the
database says: it only saves the HMAC."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.flows.kept import KeptPerFlow

# The key name of the blind-index digests of item keys (flow_item.item_digest); "@" keeps it
# apart from any key name an object type can define.
ITEM_KEY_NAME = "@flowItem"
# The most keys kept, all flows together (a key and its digest: about 250 bytes, so some 60 MB
# at most); a larger source's keys beyond are digested every pass, as before.
KEPT_KEYS = 250_000
# What no item key is (the fingerprint of a domain's index key).
_FINGERPRINT_VALUE = "\x00fingerprint"


def item_digest(cipher: DomainCipher, key: str) -> bytes:
    """How flow_item knows the item of `key`."""
    return cipher.digest(ITEM_KEY_NAME, key)


def _fingerprint(cipher: DomainCipher) -> bytes:
    return cipher.digest(ITEM_KEY_NAME, _FINGERPRINT_VALUE)


class ItemDigests:
    """The digests of one flow's item keys for one pass (`digest`), from those kept since the
    flow's previous pass where the domain's key is the same; `keep()` keeps those of this pass
    for the next: those asked for in this pass (the keys listed), the others dropped."""

    def __init__(self, flow: Hashable, cipher: DomainCipher) -> None:
        self._flow = flow
        self._cipher = cipher
        self._fingerprint = _fingerprint(cipher)
        self._before = _KEPT.get(flow, self._fingerprint) or {}
        self._now: dict[str, bytes] = {}

    def digest(self, key: str) -> bytes:
        found = self._now.get(key)
        if found is None:
            found = self._before.get(key)
            if found is None:
                found = item_digest(self._cipher, key)
            if len(self._now) < KEPT_KEYS:
                self._now[key] = found
        return found

    def keep(self) -> None:
        _KEPT.put(self._flow, self._fingerprint, self._now)


def drop(gone: Callable[[Hashable], bool]) -> None:
    """Drop the digests kept for the flows `gone` says are (flows.service `_drop_gone_flows`)."""
    _KEPT.drop(gone)


# By flow: the fingerprint of the domain's index key, and the digests of the keys of the flow's
# latest listing.
_KEPT: KeptPerFlow[bytes, dict[str, bytes]] = KeptPerFlow(KEPT_KEYS)
