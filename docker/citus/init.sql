-- Lesson 11 (scaling): the sharded orders of the postgres_fdw demo, distributed by Citus instead.
-- Run once by the citus service of docker-compose.yml (profile "citus") when its data volume is created:
--   docker compose --profile citus up -d citus
--   docker compose exec citus psql -U postgres -d workbook -c "EXPLAIN VERBOSE SELECT * FROM orders WHERE customer_id = 42"
-- One node: the Citus coordinator also holds the shards (add workers with citus_add_node to spread them).
-- Lines that call Citus are marked "-- citus"; tests/test_compose.py runs the others on a plain PostgreSQL.

CREATE EXTENSION IF NOT EXISTS citus;  -- citus

-- The same table as helpers.replicas.SHARD_SCHEMA: the distribution column is part of the primary key, because
-- Citus enforces a unique constraint only when it includes that column (each shard checks its own rows, and all
-- of a customer's rows are in one shard); it refuses one on order_id alone. The lesson's postgres_fdw coordinator
-- cannot declare any unique index at all (its partitions are foreign tables).
CREATE TABLE orders (
    order_id    bigint NOT NULL,
    customer_id bigint NOT NULL,
    ordered_at  timestamptz NOT NULL,
    total       numeric(10,2) NOT NULL,
    PRIMARY KEY (customer_id, order_id)
);

-- Hash-distributed by customer: each customer's orders live in one shard (32 by default; 8 here).
SELECT create_distributed_table('orders', 'customer_id', shard_count := 8);  -- citus

-- The single-node image registers the coordinator as localhost:5432 in pg_dist_node, and this script runs on the
-- entrypoint's temporary server, which listens on the unix socket only: a parallel multi-shard INSERT could try to
-- open TCP connections to localhost and fail (citusdata/citus#7031; the workaround given there is sequential mode,
-- one connection for all shards). Validated by reading only: no Docker daemon on the machine this was written on.
SET citus.multi_shard_modify_mode TO 'sequential';  -- citus

-- The lesson's orders (same deterministic formula as helpers.replicas.shard_cluster: 20,000 orders of 500
-- customers).
INSERT INTO orders
SELECT g, 1 + (g * 7919) % 500, timestamptz '2026-01-01' + g * interval '1 minute', (1 + (g * 31) % 200)::numeric(10,2)
  FROM generate_series(1, 20000) AS g;

ANALYZE orders;
