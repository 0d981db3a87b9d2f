"""The kill switch: each worker's mirror of blocks, revocations and password resets,
network blocks, a user's status, the audit log and the reset hook."""
