"""The domain: rules, decisions, ids, errors, the clock and identities. No I/O."""
