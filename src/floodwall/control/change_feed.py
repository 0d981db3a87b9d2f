"""The change feed: operator changes reach every worker's local state.

An operator action publishes what changed; each worker follows the feed and updates its
kill-switch mirror, forgets cached refusals of that subject, reads and applies the one
network block that changed, and reloads the live default limit. A bulk block publishes its
users in a few messages, whose users every worker reads back a page a round trip.
Pub/sub drops messages across disconnects, so each worker also reloads everything when it
(re)subscribes, polls the live default every second and resyncs periodically.

A reload of everything reads a page at a time and gives the event loop back after each
page, so requests are served between pages however many users or networks are stored; the
pages are built aside and swapped in, and a change applied meanwhile wins over what the
reload read (``KillSwitchMirror.rebuild``, ``NetworkBlocks.rebuild``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from floodwall.core.clock import Clock
from floodwall.core.errors import StorageError
from floodwall.core.network_block import NetworkBlock
from floodwall.core.user_state import Listing, UserState
from floodwall.killswitch.mirror import KillSwitchMirror
from floodwall.killswitch.networks import NetworkBlocks
from floodwall.killswitch.reset_hook import ResetNotifier
from floodwall.limiting.deny_cache import DenyCache
from floodwall.limiting.live_limits import LiveLimits
from floodwall.stores.protocols import ChangeChannel, LiveConfig, NetworkBlockStore, UserStates

__all__ = ["ChangeFeed"]

logger = logging.getLogger("floodwall")

POLL_SECONDS: Final = 1.0
RESUBSCRIBE_SECONDS: Final = 1.0
# Users, and network blocks, handled between two turns of the event loop by a reload or a
# bulk change: a page is a round trip and its decoding, about a millisecond of the loop.
RESYNC_PAGE: Final = 25
NETWORK_PAGE: Final = 100
# Users named by one message of a bulk change, and the bytes their ids may take in it.
USERS_PER_MESSAGE: Final = 200
MESSAGE_ID_BYTES: Final = 64 * 1024


class FeedStore(UserStates, NetworkBlockStore, ChangeChannel, LiveConfig, Protocol):
    """What the change feed reads and publishes through."""


class ChangeFeed:
    """Publishes operator changes and keeps this worker's copy of them."""

    def __init__(
        self,
        store: FeedStore,
        *,
        mirror: KillSwitchMirror,
        networks: NetworkBlocks,
        denials: DenyCache,
        limits: LiveLimits,
        resets: ResetNotifier,
        clock: Clock,
        resync_seconds: float,
        auto_block_memory_seconds: float,
    ) -> None:
        self._store = store
        self._keys = store.keys
        self._mirror = mirror
        self._networks = networks
        self._denials = denials
        self._limits = limits
        self._resets = resets
        self._clock = clock
        self._resync_seconds = resync_seconds
        # How long after an auto-block ends its offence count is kept (for escalation).
        self._auto_memory_ms = int(auto_block_memory_seconds * 1000)
        self.following = asyncio.Event()
        """Set while this worker is subscribed to operator changes (after its reload)."""

    # -- publishing ---------------------------------------------------------------------

    async def user_changed(
        self, user_id: str, state: UserState, *, revoked_read: bool = True
    ) -> None:
        """Apply a user's new state here, and tell every other worker (see
        ``KillSwitchMirror.update`` for ``revoked_read``)."""
        self._mirror.update(user_id, state, revoked_read=revoked_read)
        self._denials.forget(self._keys.user(user_id).bucket)
        await self._publish({"user": user_id})

    async def users_changed(self, states: Mapping[str, UserState]) -> None:
        """Many users' new states (a bulk block): applied here, published in a few
        messages rather than one per user."""
        batch: list[str] = []
        size = 0
        for user_id, state in states.items():
            self._mirror.update(user_id, state, revoked_read=False)
            self._denials.forget(self._keys.user(user_id).bucket)
            if batch and (len(batch) >= USERS_PER_MESSAGE or size > MESSAGE_ID_BYTES):
                await self._publish({"users": batch})
                batch, size = [], 0
            batch.append(user_id)
            size += len(user_id)
        if batch:
            await self._publish({"users": batch})

    async def network_changed(self, cidr: str, block: NetworkBlock | None) -> None:
        """The block of ``cidr`` is now ``block`` (``None``: lifted): apply it here, and
        tell every other worker which network to read again."""
        self._networks.apply(cidr, block)
        # "networks" makes a worker of an older version, which reads no "network", reload.
        await self._publish({"network": cidr, "networks": True})

    async def reload_networks(self) -> None:
        """Mirror the stored network blocks, a page at a time; on a store error the last
        copy keeps holding."""
        with self._networks.rebuild() as rebuild:
            await self.scan_networks(rebuild.add)
            rebuild.finish()

    async def scan_networks(
        self, take: Callable[[Mapping[str, NetworkBlock | None]], None]
    ) -> None:
        """Hand every stored network block to ``take``, ``NETWORK_PAGE`` at a time, giving
        the event loop back after each."""
        cursor: str | None = None
        while cursor != "":
            page, cursor = await self._store.scan_networks(cursor, NETWORK_PAGE)
            # The store's count is a hint: a page may bring more.
            entries = list(page.items())
            for start in range(0, len(entries), NETWORK_PAGE):
                take(dict(entries[start : start + NETWORK_PAGE]))
                await asyncio.sleep(0)

    async def config_changed(self) -> None:
        """The live default changed here; tell every other worker."""
        self._denials.clear()
        await self._publish({"config": True})

    async def _publish(self, event: Mapping[str, object]) -> None:
        await self._store.publish(json.dumps(event))

    # -- following ----------------------------------------------------------------------

    async def refresh_limits(self) -> None:
        """Reload the live default limit; cached refusals are stale when it changed."""
        if await self._limits.refresh(self._store):
            self._denials.clear()

    async def resync(self) -> None:
        """Reload this worker's mirror of the kill switch from the store, a page of users
        per round trip and turn of the event loop; deliver resets no process has
        delivered; forget ended blocks. Then reload the network blocks."""
        with self._mirror.rebuild() as rebuild:
            after: str | None = None
            while True:
                page = await self._store.list_users(Listing.USERS, after=after, count=RESYNC_PAGE)
                states = await self._store.read_users(page)
                for user_id, state in zip(page, states, strict=True):
                    kept = await self._forget_ended_block(user_id, state)
                    if kept.stored or kept.revoked:
                        rebuild.add(user_id, kept)
                        await self._resets.consider(user_id, kept)
                await asyncio.sleep(0)
                if len(page) < RESYNC_PAGE:
                    break
                after = page[-1]
            rebuild.finish()
        await self.reload_networks()
        # A lost unblock message must not leave a cached block behind for good.
        self._denials.clear()

    async def _forget_ended_block(self, user_id: str, state: UserState) -> UserState:
        # An ended block would otherwise stay in every mirror and every resync for good
        # (auto-block blocks thousands). Its offence count is kept while it can escalate.
        until = state.kill_switch.blocked_until_ms
        if state.block_mark is None or until is None or until == 0:
            return state
        memory_ms = self._auto_memory_ms if state.auto_offences is not None else 0
        if until + memory_ms > state.now_ms:
            return state
        left = await self._store.lapse_block(user_id, state)
        if left is None:
            # Blocked again meanwhile: keep what is there now.
            return await self._store.read_user(user_id)
        return left

    async def follow_events(self) -> None:
        """Apply published changes until cancelled; resubscribe after any break."""
        while True:
            try:
                async with self._store.subscription() as subscription:
                    # Subscribed first, then reloaded: no change can fall in between.
                    await self.resync()
                    await self.refresh_limits()
                    self.following.set()
                    while True:
                        message = await subscription.next_message(POLL_SECONDS)
                        if message is not None:
                            await self._on_message(message)
            except StorageError as exc:
                self.following.clear()
                logger.debug("floodwall: the change feed broke (%s); resubscribing", exc)
            except Exception:
                self.following.clear()
                # A background loop must outlive any surprise, or the mirror goes stale.
                logger.exception("floodwall: the change feed failed; resubscribing")
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def poll(self) -> None:
        """Back pub/sub up: reload the live default every second, everything periodically."""
        last_resync = self._clock.monotonic()
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.refresh_limits()
                if self._clock.monotonic() - last_resync >= self._resync_seconds:
                    await self.resync()
                    last_resync = self._clock.monotonic()
            except StorageError as exc:
                logger.debug("floodwall: refreshing settings failed: %s", exc)
            except Exception:
                logger.exception("floodwall: refreshing settings failed")

    async def _on_message(self, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        user_id = event.get("user")
        if isinstance(user_id, str):
            self._denials.forget(self._keys.user(user_id).bucket)
            state = await self._store.read_user(user_id)
            self._mirror.update(user_id, state)
            await self._resets.consider(user_id, state)
        elif isinstance(users := event.get("users"), list):
            await self._users_changed_elsewhere([u for u in users if isinstance(u, str)])
        elif isinstance(cidr := event.get("network"), str):
            self._networks.apply(cidr, await self._store.read_network(cidr))
        elif event.get("networks"):
            # A process of an older version names no network.
            await self.reload_networks()
        elif event.get("config"):
            self._denials.clear()
            await self.refresh_limits()

    async def _users_changed_elsewhere(self, user_ids: list[str]) -> None:
        for start in range(0, len(user_ids), RESYNC_PAGE):
            if start:
                await asyncio.sleep(0)
            page = user_ids[start : start + RESYNC_PAGE]
            for user_id in page:
                self._denials.forget(self._keys.user(user_id).bucket)
            states = await self._store.read_users(page)
            for user_id, state in zip(page, states, strict=True):
                self._mirror.update(user_id, state)
                await self._resets.consider(user_id, state)
