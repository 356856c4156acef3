-- Signed checkpoints (streams/checkpointer.py): one row per checkpoint, with the hashes
-- of its leaves in tree order (hex, 64 characters each) so an inclusion proof can be
-- computed later, and one row per leaf, ordered by org first, to find the checkpoints
-- that cover a chain.
CREATE TABLE IF NOT EXISTS {db}.checkpoints
(
    number        UInt64,
    period_start  DateTime64(3, 'UTC'),
    period_end    DateTime64(3, 'UTC'),
    tree_size     UInt64,
    root          String,
    previous      String,
    signature     String,
    public_key    String,
    leaf_hashes   String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY number;

CREATE TABLE IF NOT EXISTS {db}.checkpoint_leaves
(
    org_id      String,
    kind        LowCardinality(String),
    chain_id    String,
    checkpoint  UInt64,
    leaf_index  UInt64,
    seq         UInt64,
    hash        String
)
ENGINE = ReplacingMergeTree
ORDER BY (org_id, kind, chain_id, checkpoint)
