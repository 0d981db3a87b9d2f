"""Operator actions on networks: block every address inside a CIDR on every worker, lift
a block, list the blocks that hold."""

from __future__ import annotations

from floodwall.control.action_parts import PYTHON_ACTOR, ActionParts, ttl_ms
from floodwall.core import rules
from floodwall.core.network_block import NetworkBlock
from floodwall.killswitch.networks import NetworkListing

__all__ = ["NetworkActions"]


class NetworkActions(ActionParts):
    """What an operator can do to networks."""

    async def networks(self) -> list[NetworkBlock]:
        """The network blocks that hold now, as stored, in address order."""
        listing = NetworkListing(self._networks.wall() * 1000)
        await self._feed.scan_networks(listing.add)
        return listing.blocks()

    async def block_network(
        self,
        cidr: str,
        *,
        reason: str,
        ttl_seconds: float | None = None,
        force: bool = False,
        actor: str = PYTHON_ACTOR,
    ) -> NetworkBlock:
        """Refuse (403) every request from inside ``cidr`` on every worker, from its next
        request and with no round trip, for ``ttl_seconds`` or until lifted; networks
        broader than a /8 (IPv4) or /32 (IPv6) only with ``force``."""
        network = str(rules.network(cidr, force=force))
        rules.REASON.check(reason)
        ttl = ttl_ms(ttl_seconds)
        now_ms = await self._store.now_ms()
        # Only a new network at the limit reads every block (to make room).
        new = await self._store.read_network(network) is None
        if new and await self._store.count_networks() >= rules.MAX_NETWORK_BLOCKS:
            stored = await self._store.read_networks()
            # Blocks that ran out stay stored until lifted: make room from them first.
            for cidr, stored_block in list(stored.items()):
                if stored_block is None or not stored_block.active(now_ms):
                    await self._store.write_network(cidr, None)
                    del stored[cidr]
            full = len(stored) >= rules.MAX_NETWORK_BLOCKS
        else:
            full = False
        if full:
            raise rules.RuleError(
                f"at most {rules.MAX_NETWORK_BLOCKS} networks are blocked at once: "
                "lift some, or block a broader network"
            )
        until = None if ttl is None else now_ms + ttl
        block = NetworkBlock(network, reason, actor, now_ms, until)
        await self._store.write_network(network, block)
        await self._feed.network_changed(network, block)
        await self.audit.record(
            actor,
            "block-network",
            None,
            reason=reason,
            expires_ms=until,
            detail=f"network={network}",
            now_ms=now_ms,
        )
        return block

    async def unblock_network(
        self, cidr: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> str:
        """Lift a network block; lifting one that does not exist changes nothing. Returns
        the network as stored (``10.0.0.0/8``)."""
        network = str(rules.network(cidr, force=True))
        rules.REASON.optional(reason)
        await self._store.write_network(network, None)
        await self._feed.network_changed(network, None)
        await self.audit.record(
            actor, "unblock-network", None, reason=reason, detail=f"network={network}"
        )
        return network
