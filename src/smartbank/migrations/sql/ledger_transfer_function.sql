-- The ledger's batch transfer function: its current definition.
--
-- Input: one array per field of the transfer requests, already validated in Python (well-formed ids,
-- positive bounded amounts, known types). Output: one row per request, in order (idx from 1), or a
-- single row (idx 0, result 'all_created') when the fast path created every transfer.
-- See docs/adr/0002-ledger-concurrency.md.
--
-- Migrations apply this file (CREATE OR REPLACE): 0002 when it creates the schema, and each later
-- migration that changes the function re-applies it, so every database ends with this definition.
-- The two legs of each new transfer, in batch order: what it adds to each side of each account.
-- A plain SQL function, inlined by the planner into the queries that use it.
CREATE OR REPLACE FUNCTION ledger.batch_legs(t_debit uuid[], t_credit uuid[], t_currency text[], t_type text[],
                                  t_amount bigint[])
RETURNS TABLE (ord bigint, acc uuid, currency text, dpo bigint, dp bigint, cpo bigint, cp bigint)
LANGUAGE sql IMMUTABLE AS $legs$
    SELECT u.ord, u.debit, u.currency,
           CASE WHEN u.type = 'posted' THEN u.amount ELSE 0 END,
           CASE WHEN u.type = 'pending' THEN u.amount ELSE 0 END, 0::bigint, 0::bigint
      FROM unnest(t_debit, t_currency, t_type, t_amount) WITH ORDINALITY AS u(debit, currency, type, amount, ord)
    UNION ALL
    SELECT u.ord, u.credit, u.currency, 0::bigint, 0::bigint,
           CASE WHEN u.type = 'posted' THEN u.amount ELSE 0 END,
           CASE WHEN u.type = 'pending' THEN u.amount ELSE 0 END
      FROM unnest(t_credit, t_currency, t_type, t_amount) WITH ORDINALITY AS u(credit, currency, type, amount, ord)
$legs$;

-- A sum of bigints that stays a bigint and stops with numeric_value_out_of_range when it does not fit
-- (sum() of bigint returns numeric, converted and compared once per group).
CREATE OR REPLACE AGGREGATE ledger.sum_exact(bigint) (SFUNC = int8pl, STYPE = bigint, INITCOND = '0');

-- The definition before p_event (the fast path's event, built by the caller) was added.
DROP FUNCTION IF EXISTS ledger.create_transfers(timestamptz, uuid[], text[], uuid[], uuid[], bigint[], text[],
                                                integer[], uuid[], integer[], uuid[], jsonb[], bytea[], boolean[]);

-- p_event: the ledger.transfers_created event of the whole batch, as the fast path writes it when every
-- transfer is created (count, then one array per field, as the general path builds it below). The
-- caller encodes it with the arrays, from the same requests. Without it (NULL) the batch takes the
-- general path, which builds its event from what it created.
CREATE OR REPLACE FUNCTION ledger.create_transfers(
    p_now timestamptz, t_id uuid[], t_type text[], t_debit uuid[], t_credit uuid[], t_amount bigint[],
    t_currency text[], t_code integer[], t_pending uuid[], t_timeout integer[], t_reversal uuid[],
    t_metadata jsonb[], t_hash bytea[], t_linked boolean[], p_event jsonb DEFAULT NULL)
RETURNS TABLE (idx integer, result text, created_at timestamptz, amount_minor bigint)
LANGUAGE plpgsql
-- Plans of the statements below are the same for every batch: plan once per session, not per call.
SET plan_cache_mode = force_generic_plan
-- Joins against ledger.accounts are nested loops driven by an id-sorted array, whatever the table's
-- size, so rows are locked in id order (no deadlock between concurrent calls).
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
DECLARE
    max_amount constant bigint := 9223372036854775807;
    n integer := cardinality(t_id);
    r record;
    res text;
    -- results, by position
    out_result text[] := array_fill(NULL::text, ARRAY[n]);
    out_created timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    out_amount bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    -- existing transfers with the requested ids
    ex_ids uuid[]; ex_hash bytea[]; ex_created timestamptz[]; ex_amount bigint[];
    pos integer;
    -- new transfers, appended in order
    nw_ids uuid[] := '{}'; nw_type text[] := '{}'; nw_debit uuid[] := '{}'; nw_credit uuid[] := '{}';
    nw_amount bigint[] := '{}'; nw_currency text[] := '{}'; nw_code integer[] := '{}';
    nw_pending uuid[] := '{}'; nw_timeout integer[] := '{}'; nw_expires timestamptz[] := '{}';
    nw_reversal uuid[] := '{}'; nw_metadata jsonb[] := '{}'; nw_hash bytea[] := '{}';
    nw_resolved boolean[] := '{}';
    -- pending transfers from before this batch that this batch resolves
    resolved_db uuid[] := '{}';
    -- applied balance deltas, for undoing a failed chain: account, dp, dpo, cp, cpo
    u_acc uuid[] := '{}'; u_dp bigint[] := '{}'; u_dpo bigint[] := '{}'; u_cp bigint[] := '{}';
    u_cpo bigint[] := '{}';
    -- the open chain
    chain_first integer := NULL; chain_nw integer := 0; chain_u integer := 0; chain_resolved_db integer := 0;
    chain_failed boolean := false;
    -- the pending transfer being posted or voided
    p_type text; p_debit uuid; p_credit uuid; p_amount bigint; p_currency text; p_code integer;
    p_expires timestamptz; p_in_batch integer;
    amt bigint; o_type text; o_debit uuid; o_credit uuid; o_amount bigint; o_currency text;
    reversed bigint;
    acc record;
    i integer; k integer;
    lock_ids uuid[];
    simple boolean; n_accounts bigint; n_updated bigint;
    saved_lock_timeout text;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;

    -- 1. Can the fast path apply? Only posted or pending transfers, no reversals, and no linked chain
    --    left open at the end of the batch (the general path fails that chain), and the caller's
    --    event (p_event) to write. Ids are not checked here: an id that exists already, or twice in
    --    the batch, makes the INSERT below fail with a unique violation, which sends the batch to the
    --    general path like a missed guard does.
    SELECT bool_and(u.type IN ('posted', 'pending') AND u.reversal IS NULL AND u.debit <> u.credit)
               AND NOT coalesce(t_linked[n], false) AND p_event IS NOT NULL
      INTO simple
      FROM unnest(t_id, t_type, t_reversal, t_debit, t_credit) AS u(id, type, reversal, debit, credit);

    -- 2. Fast path: new posted or pending transfers that all succeed, written with one INSERT of the
    --    transfers, one outbox row and then one guarded UPDATE of the accounts (each account once,
    --    with the batch's total change, rows locked in id order). The guard assumes the worst order
    --    (every debit of the batch before any credit on a debit-limited account, and the reverse on a
    --    credit-limited one): when it holds, every order holds, so applying the transfers one by one
    --    and at once are the same. If any account misses the guard (or is missing, frozen, in another
    --    currency), or an id exists, the block is rolled back (its row locks too) and the general path
    --    decides.
    --    The account rows are locked last: a call holds them only for its UPDATE and its commit, so
    --    concurrent calls that share accounts wait on each other for that long, not for each other's
    --    inserts as well. Waits cannot form a cycle: the transfers are inserted in id order (two calls
    --    inserting the same ids meet them in the same order), account rows are locked in id order, and
    --    the general path, which locks accounts before it inserts, never waits on an insert while it
    --    holds them (step 6).
    IF simple THEN
        BEGIN
            -- In id order, each with its history position (seq) drawn in batch order: OFFSET 0 keeps the
            -- subquery, and so the order nextval() is called in, from being merged into the sort.
            INSERT INTO ledger.transfers (seq, id, type, debit_account_id, credit_account_id, amount_minor,
                                          currency, code, timeout_s, expires_at, metadata, request_hash,
                                          created_at)
            OVERRIDING SYSTEM VALUE
            SELECT u.seq, u.id, u.type, u.debit, u.credit, u.amount, u.currency, u.code, u.timeout_s,
                   CASE WHEN u.timeout_s IS NULL THEN NULL ELSE p_now + make_interval(secs => u.timeout_s) END,
                   coalesce(u.metadata, '{}'::jsonb), u.hash, p_now
              FROM (SELECT nextval('ledger.transfers_seq_seq'::regclass) AS seq, v.*
                      FROM unnest(t_id, t_type, t_debit, t_credit, t_amount, t_currency, t_code, t_timeout,
                                  t_metadata, t_hash)
                           AS v(id, type, debit, credit, amount, currency, code, timeout_s, metadata, hash)
                    OFFSET 0) u
             ORDER BY u.id;
            IF 'pending' = ANY (t_type) THEN
                INSERT INTO ledger.open_holds (transfer_id, expires_at)
                SELECT u.id, CASE WHEN u.timeout_s IS NULL THEN NULL
                                  ELSE p_now + make_interval(secs => u.timeout_s) END
                  FROM unnest(t_id, t_type, t_timeout) AS u(id, type, timeout_s) WHERE u.type = 'pending';
            END IF;
            INSERT INTO platform.outbox (event_id, topic, payload, created_at)
            VALUES (gen_random_uuid(), 'ledger.transfers_created',
                    p_event, p_now);
            -- The accounts last: each once, with the batch's total change per side, in id order (the
            -- nested loop over the id-sorted totals locks the rows in that order). A side whose batch
            -- total does not fit in 63 bits stops ledger.sum_exact with numeric_value_out_of_range:
            -- the general path then says which transfer overflows.
            WITH d AS MATERIALIZED (
                SELECT l.acc, min(l.currency) AS cur_lo, max(l.currency) AS cur_hi, ledger.sum_exact(l.dpo) AS dpo,
                       ledger.sum_exact(l.dp) AS dp, ledger.sum_exact(l.cpo) AS cpo, ledger.sum_exact(l.cp) AS cp
                  FROM ledger.batch_legs(t_debit, t_credit, t_currency, t_type, t_amount) l
                 GROUP BY l.acc ORDER BY l.acc
            ), u AS (
                UPDATE ledger.accounts a
                   SET debits_posted = a.debits_posted + d.dpo, debits_pending = a.debits_pending + d.dp,
                       credits_posted = a.credits_posted + d.cpo, credits_pending = a.credits_pending + d.cp
                  FROM d
                 -- In bigint, arranged so that no term can overflow: each side of an account fits in 63
                 -- bits, so its difference with a batch total that fits does too.
                 WHERE a.id = d.acc AND a.status = 'open' AND a.currency = d.cur_lo AND a.currency = d.cur_hi
                   AND a.debits_posted + a.debits_pending <= max_amount - (d.dpo + d.dp)
                   AND a.credits_posted + a.credits_pending <= max_amount - (d.cpo + d.cp)
                   AND (NOT a.debits_must_not_exceed_credits
                        OR a.debits_posted + a.debits_pending - a.credits_posted <= a.limit_minor - (d.dpo + d.dp))
                   AND (NOT a.credits_must_not_exceed_debits
                        OR a.credits_posted + a.credits_pending - a.debits_posted <= a.limit_minor - (d.cpo + d.cp))
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u) INTO n_accounts, n_updated;
            IF n_updated <> n_accounts THEN
                RAISE EXCEPTION 'fast path does not apply' USING ERRCODE = 'LF001';
            END IF;
            -- One row stands for the whole batch: every transfer created, at p_now, for its amount.
            RETURN QUERY SELECT 0, 'all_created'::text, p_now, NULL::bigint;
            RETURN;
        EXCEPTION WHEN SQLSTATE 'LF001' OR unique_violation OR numeric_value_out_of_range THEN
            NULL;  -- rolled back to the start of the block; the general path decides
        END;
    END IF;

    -- 3. Every account this batch may touch, locked in id order (concurrent batches never deadlock).
    SELECT array_agg(DISTINCT x ORDER BY x) INTO lock_ids FROM (
        SELECT unnest(t_debit) AS x
        UNION ALL SELECT unnest(t_credit)
        UNION ALL SELECT t.debit_account_id FROM ledger.transfers t WHERE t.id = ANY (t_pending)
        UNION ALL SELECT t.credit_account_id FROM ledger.transfers t WHERE t.id = ANY (t_pending)
    ) s WHERE x IS NOT NULL;
    PERFORM FROM (SELECT a.id FROM ledger.accounts a WHERE a.id = ANY (lock_ids) ORDER BY a.id FOR NO KEY UPDATE) l;

    -- 4. Ids that already exist (read after the locks, so a concurrent batch on the same accounts
    --    that committed first is seen).
    SELECT coalesce(array_agg(t.id), '{}'), coalesce(array_agg(t.request_hash), '{}'),
           coalesce(array_agg(t.created_at), '{}'), coalesce(array_agg(t.amount_minor), '{}')
      INTO ex_ids, ex_hash, ex_created, ex_amount
      FROM ledger.transfers t
     WHERE t.id = ANY (t_id);

    -- 5. The general path: apply each transfer in order.
    FOR r IN
        SELECT x.ord::integer AS ord, x.id, x.type, x.debit, x.credit, x.amount, x.currency, x.code,
               x.pending_id, x.timeout_s, x.reversal_of, x.metadata, x.hash, coalesce(x.linked, false) AS linked
          FROM unnest(t_id, t_type, t_debit, t_credit, t_amount, t_currency, t_code, t_pending, t_timeout,
                      t_reversal, t_metadata, t_hash, t_linked) WITH ORDINALITY
               AS x(id, type, debit, credit, amount, currency, code, pending_id, timeout_s, reversal_of,
                    metadata, hash, linked, ord)
         ORDER BY x.ord
    LOOP
        IF chain_first IS NULL THEN
            chain_first := r.ord; chain_nw := cardinality(nw_ids); chain_u := cardinality(u_acc);
            chain_resolved_db := cardinality(resolved_db); chain_failed := false;
        END IF;
        res := NULL;

        IF chain_failed THEN
            res := 'linked_event_failed';
        ELSE
            pos := array_position(ex_ids, r.id);
            IF pos IS NOT NULL THEN
                IF ex_hash[pos] = r.hash THEN
                    res := 'exists';
                    out_created[r.ord] := ex_created[pos];
                    out_amount[r.ord] := ex_amount[pos];
                ELSE
                    res := 'id_already_exists_with_different_fields';
                END IF;
            ELSIF array_position(nw_ids, r.id) IS NOT NULL THEN
                pos := array_position(nw_ids, r.id);
                IF nw_hash[pos] = r.hash THEN
                    res := 'exists'; out_created[r.ord] := p_now; out_amount[r.ord] := nw_amount[pos];
                ELSE
                    res := 'id_already_exists_with_different_fields';
                END IF;
            ELSIF r.type IN ('posted', 'pending') THEN
                amt := r.amount;
                IF r.debit = r.credit THEN
                    res := 'accounts_must_be_different';
                END IF;
                -- A reversal moves money back along an earlier posted transfer, at most its amount.
                IF res IS NULL AND r.reversal_of IS NOT NULL THEN
                    SELECT t.type, t.debit_account_id, t.credit_account_id, t.amount_minor, t.currency
                      INTO o_type, o_debit, o_credit, o_amount, o_currency
                      FROM ledger.transfers t WHERE t.id = r.reversal_of;
                    IF NOT FOUND THEN
                        pos := array_position(nw_ids, r.reversal_of);
                        IF pos IS NOT NULL THEN
                            o_type := nw_type[pos]; o_debit := nw_debit[pos]; o_credit := nw_credit[pos];
                            o_amount := nw_amount[pos]; o_currency := nw_currency[pos];
                        END IF;
                    END IF;
                    IF o_type IS NULL THEN
                        res := 'reversal_original_not_found';
                    ELSIF o_type NOT IN ('posted', 'post_pending') OR r.type <> 'posted' THEN
                        res := 'reversal_original_not_posted';
                    ELSIF o_debit <> r.credit OR o_credit <> r.debit OR o_currency <> r.currency THEN
                        res := 'reversal_accounts_mismatch';
                    ELSE
                        SELECT coalesce(sum(t.amount_minor), 0) INTO reversed
                          FROM ledger.transfers t WHERE t.reversal_of = r.reversal_of;
                        FOR k IN 1 .. cardinality(nw_ids) LOOP
                            IF nw_reversal[k] = r.reversal_of THEN
                                reversed := reversed + nw_amount[k];
                            END IF;
                        END LOOP;
                        IF amt > o_amount - reversed THEN
                            res := 'reversal_exceeds_original';
                        END IF;
                    END IF;
                    o_type := NULL;
                END IF;

                IF res IS NULL THEN
                    -- Debit side: guarded update, one statement, no read-check-write.
                    UPDATE ledger.accounts a
                       SET debits_posted = a.debits_posted + CASE WHEN r.type = 'posted' THEN amt ELSE 0 END,
                           debits_pending = a.debits_pending + CASE WHEN r.type = 'pending' THEN amt ELSE 0 END
                     WHERE a.id = r.debit AND a.status = 'open' AND a.currency = r.currency
                       AND amt <= (max_amount - a.debits_posted) - a.debits_pending
                       AND (NOT a.debits_must_not_exceed_credits
                            OR (a.debits_posted + a.debits_pending + amt) - a.credits_posted <= a.limit_minor);
                    IF NOT FOUND THEN
                        SELECT * INTO acc FROM ledger.accounts a WHERE a.id = r.debit;
                        res := CASE
                            WHEN acc.id IS NULL THEN 'debit_account_not_found'
                            WHEN acc.currency <> r.currency THEN 'currency_mismatch'
                            WHEN acc.status = 'frozen' THEN 'debit_account_frozen'
                            WHEN acc.status = 'closed' THEN 'debit_account_closed'
                            WHEN amt > (max_amount - acc.debits_posted) - acc.debits_pending THEN 'overflows_debits'
                            ELSE 'exceeds_credits' END;
                    ELSE
                        u_acc := u_acc || r.debit;
                        u_dp := u_dp || CASE WHEN r.type = 'pending' THEN amt ELSE 0 END;
                        u_dpo := u_dpo || CASE WHEN r.type = 'posted' THEN amt ELSE 0 END;
                        u_cp := u_cp || 0::bigint; u_cpo := u_cpo || 0::bigint;
                        UPDATE ledger.accounts a
                           SET credits_posted = a.credits_posted + CASE WHEN r.type = 'posted' THEN amt ELSE 0 END,
                               credits_pending = a.credits_pending + CASE WHEN r.type = 'pending' THEN amt ELSE 0 END
                         WHERE a.id = r.credit AND a.status = 'open' AND a.currency = r.currency
                           AND amt <= (max_amount - a.credits_posted) - a.credits_pending
                           AND (NOT a.credits_must_not_exceed_debits
                                OR (a.credits_posted + a.credits_pending + amt) - a.debits_posted <= a.limit_minor);
                        IF NOT FOUND THEN
                            SELECT * INTO acc FROM ledger.accounts a WHERE a.id = r.credit;
                            res := CASE
                                WHEN acc.id IS NULL THEN 'credit_account_not_found'
                                WHEN acc.currency <> r.currency THEN 'currency_mismatch'
                                WHEN acc.status = 'frozen' THEN 'credit_account_frozen'
                                WHEN acc.status = 'closed' THEN 'credit_account_closed'
                                WHEN amt > (max_amount - acc.credits_posted) - acc.credits_pending
                                    THEN 'overflows_credits'
                                ELSE 'exceeds_debits' END;
                        ELSE
                            u_acc := u_acc || r.credit;
                            u_dp := u_dp || 0::bigint; u_dpo := u_dpo || 0::bigint;
                            u_cp := u_cp || CASE WHEN r.type = 'pending' THEN amt ELSE 0 END;
                            u_cpo := u_cpo || CASE WHEN r.type = 'posted' THEN amt ELSE 0 END;
                        END IF;
                    END IF;
                END IF;

                IF res IS NULL THEN
                    res := 'created';
                    nw_ids := nw_ids || r.id; nw_type := nw_type || r.type; nw_debit := nw_debit || r.debit;
                    nw_credit := nw_credit || r.credit; nw_amount := nw_amount || amt;
                    nw_currency := nw_currency || r.currency; nw_code := nw_code || r.code;
                    nw_pending := nw_pending || NULL::uuid; nw_timeout := nw_timeout || r.timeout_s;
                    nw_expires := nw_expires || CASE WHEN r.timeout_s IS NULL THEN NULL
                                                     ELSE p_now + make_interval(secs => r.timeout_s) END;
                    nw_reversal := nw_reversal || r.reversal_of;
                    nw_metadata := nw_metadata || coalesce(r.metadata, '{}'::jsonb);
                    nw_hash := nw_hash || r.hash; nw_resolved := nw_resolved || false;
                    out_created[r.ord] := p_now; out_amount[r.ord] := amt;
                END IF;

            ELSE  -- post_pending, void_pending, expire_pending
                p_type := NULL; p_expires := NULL;
                p_in_batch := array_position(nw_ids, r.pending_id);
                IF p_in_batch IS NOT NULL THEN
                    p_type := nw_type[p_in_batch]; p_debit := nw_debit[p_in_batch];
                    p_credit := nw_credit[p_in_batch]; p_amount := nw_amount[p_in_batch];
                    p_currency := nw_currency[p_in_batch]; p_code := nw_code[p_in_batch];
                    p_expires := nw_expires[p_in_batch];
                ELSE
                    SELECT t.type, t.debit_account_id, t.credit_account_id, t.amount_minor, t.currency,
                           t.code, t.expires_at
                      INTO p_type, p_debit, p_credit, p_amount, p_currency, p_code, p_expires
                      FROM ledger.transfers t WHERE t.id = r.pending_id;
                END IF;

                IF p_type IS NULL THEN
                    res := 'pending_transfer_not_found';
                ELSIF p_type <> 'pending' THEN
                    res := 'pending_transfer_not_pending';
                ELSIF r.debit IS NOT NULL AND r.debit <> p_debit THEN
                    res := 'pending_transfer_has_different_debit_account';
                ELSIF r.credit IS NOT NULL AND r.credit <> p_credit THEN
                    res := 'pending_transfer_has_different_credit_account';
                ELSIF r.currency IS NOT NULL AND r.currency <> p_currency THEN
                    res := 'pending_transfer_has_different_currency';
                ELSIF (p_in_batch IS NOT NULL AND nw_resolved[p_in_batch])
                      OR r.pending_id = ANY (resolved_db)
                      OR (p_in_batch IS NULL
                          AND NOT EXISTS (SELECT 1 FROM ledger.open_holds h WHERE h.transfer_id = r.pending_id))
                THEN
                    SELECT t.type INTO o_type FROM ledger.transfers t WHERE t.pending_id = r.pending_id;
                    IF o_type IS NULL THEN
                        pos := array_position(nw_pending, r.pending_id);
                        o_type := CASE WHEN pos IS NULL THEN NULL ELSE nw_type[pos] END;
                    END IF;
                    res := CASE o_type
                        WHEN 'post_pending' THEN 'pending_transfer_already_posted'
                        WHEN 'void_pending' THEN 'pending_transfer_already_voided'
                        ELSE 'pending_transfer_expired' END;
                    o_type := NULL;
                ELSIF r.type <> 'expire_pending' AND p_expires IS NOT NULL AND p_expires <= p_now THEN
                    res := 'pending_transfer_expired';
                ELSIF r.type = 'expire_pending' AND (p_expires IS NULL OR p_expires > p_now) THEN
                    res := 'pending_transfer_not_expired';
                ELSE
                    amt := CASE WHEN r.type = 'post_pending' THEN coalesce(r.amount, p_amount) ELSE p_amount END;
                    IF amt > p_amount THEN
                        res := 'exceeds_pending_transfer_amount';
                    END IF;
                END IF;

                IF res IS NULL THEN
                    -- Posting moves the hold to posted (never beyond a limit: the total only shrinks);
                    -- voiding and expiry release it. Posting needs both accounts open.
                    UPDATE ledger.accounts a
                       SET debits_pending = a.debits_pending - p_amount,
                           debits_posted = a.debits_posted + CASE WHEN r.type = 'post_pending' THEN amt ELSE 0 END
                     WHERE a.id = p_debit AND (r.type <> 'post_pending' OR a.status = 'open');
                    IF NOT FOUND THEN
                        SELECT * INTO acc FROM ledger.accounts a WHERE a.id = p_debit;
                        res := CASE WHEN acc.status = 'frozen' THEN 'debit_account_frozen'
                                    ELSE 'debit_account_closed' END;
                    ELSE
                        u_acc := u_acc || p_debit; u_dp := u_dp || (-p_amount);
                        u_dpo := u_dpo || CASE WHEN r.type = 'post_pending' THEN amt ELSE 0 END;
                        u_cp := u_cp || 0::bigint; u_cpo := u_cpo || 0::bigint;
                        UPDATE ledger.accounts a
                           SET credits_pending = a.credits_pending - p_amount,
                               credits_posted = a.credits_posted
                                   + CASE WHEN r.type = 'post_pending' THEN amt ELSE 0 END
                         WHERE a.id = p_credit AND (r.type <> 'post_pending' OR a.status = 'open');
                        IF NOT FOUND THEN
                            SELECT * INTO acc FROM ledger.accounts a WHERE a.id = p_credit;
                            res := CASE WHEN acc.status = 'frozen' THEN 'credit_account_frozen'
                                        ELSE 'credit_account_closed' END;
                        ELSE
                            u_acc := u_acc || p_credit; u_dp := u_dp || 0::bigint; u_dpo := u_dpo || 0::bigint;
                            u_cp := u_cp || (-p_amount);
                            u_cpo := u_cpo || CASE WHEN r.type = 'post_pending' THEN amt ELSE 0 END;
                        END IF;
                    END IF;
                END IF;

                IF res IS NULL THEN
                    res := 'created';
                    IF p_in_batch IS NOT NULL THEN
                        nw_resolved[p_in_batch] := true;
                    ELSE
                        resolved_db := resolved_db || r.pending_id;
                    END IF;
                    nw_ids := nw_ids || r.id; nw_type := nw_type || r.type; nw_debit := nw_debit || p_debit;
                    nw_credit := nw_credit || p_credit;
                    nw_amount := nw_amount || CASE WHEN r.type = 'post_pending' THEN amt ELSE p_amount END;
                    nw_currency := nw_currency || p_currency;
                    nw_code := nw_code || coalesce(r.code, p_code);
                    nw_pending := nw_pending || r.pending_id; nw_timeout := nw_timeout || NULL::integer;
                    nw_expires := nw_expires || NULL::timestamptz; nw_reversal := nw_reversal || NULL::uuid;
                    nw_metadata := nw_metadata || coalesce(r.metadata, '{}'::jsonb);
                    nw_hash := nw_hash || r.hash; nw_resolved := nw_resolved || false;
                    out_created[r.ord] := p_now;
                    out_amount[r.ord] := nw_amount[cardinality(nw_amount)];
                END IF;
            END IF;
        END IF;

        out_result[r.ord] := res;

        IF res NOT IN ('created', 'exists') AND NOT chain_failed THEN
            -- Undo everything this chain applied, newest first (each step restores an earlier,
            -- valid row), and drop its new transfers.
            FOR k IN REVERSE cardinality(u_acc) .. chain_u + 1 LOOP
                UPDATE ledger.accounts a
                   SET debits_pending = a.debits_pending - u_dp[k], debits_posted = a.debits_posted - u_dpo[k],
                       credits_pending = a.credits_pending - u_cp[k], credits_posted = a.credits_posted - u_cpo[k]
                 WHERE a.id = u_acc[k];
            END LOOP;
            FOR k IN chain_nw + 1 .. cardinality(nw_ids) LOOP
                IF nw_pending[k] IS NOT NULL THEN
                    pos := array_position(nw_ids, nw_pending[k]);
                    IF pos IS NOT NULL AND pos <= chain_nw THEN
                        nw_resolved[pos] := false;
                    END IF;
                END IF;
            END LOOP;
            u_acc := u_acc[1:chain_u]; u_dp := u_dp[1:chain_u]; u_dpo := u_dpo[1:chain_u];
            u_cp := u_cp[1:chain_u]; u_cpo := u_cpo[1:chain_u];
            nw_ids := nw_ids[1:chain_nw]; nw_type := nw_type[1:chain_nw]; nw_debit := nw_debit[1:chain_nw];
            nw_credit := nw_credit[1:chain_nw]; nw_amount := nw_amount[1:chain_nw];
            nw_currency := nw_currency[1:chain_nw]; nw_code := nw_code[1:chain_nw];
            nw_pending := nw_pending[1:chain_nw]; nw_timeout := nw_timeout[1:chain_nw];
            nw_expires := nw_expires[1:chain_nw]; nw_reversal := nw_reversal[1:chain_nw];
            nw_metadata := nw_metadata[1:chain_nw]; nw_hash := nw_hash[1:chain_nw];
            nw_resolved := nw_resolved[1:chain_nw];
            resolved_db := resolved_db[1:chain_resolved_db];
            FOR k IN chain_first .. r.ord - 1 LOOP
                out_result[k] := 'linked_event_failed'; out_created[k] := NULL; out_amount[k] := NULL;
            END LOOP;
            out_created[r.ord] := NULL; out_amount[r.ord] := NULL;
            chain_failed := true;
        END IF;

        IF NOT r.linked THEN
            chain_first := NULL;
        ELSIF r.ord = n THEN
            -- The batch ended inside a chain: the chain fails as a whole.
            IF NOT chain_failed THEN
                FOR k IN REVERSE cardinality(u_acc) .. chain_u + 1 LOOP
                    UPDATE ledger.accounts a
                       SET debits_pending = a.debits_pending - u_dp[k],
                           debits_posted = a.debits_posted - u_dpo[k],
                           credits_pending = a.credits_pending - u_cp[k],
                           credits_posted = a.credits_posted - u_cpo[k]
                     WHERE a.id = u_acc[k];
                END LOOP;
                nw_ids := nw_ids[1:chain_nw]; nw_type := nw_type[1:chain_nw]; nw_debit := nw_debit[1:chain_nw];
                nw_credit := nw_credit[1:chain_nw]; nw_amount := nw_amount[1:chain_nw];
                nw_currency := nw_currency[1:chain_nw]; nw_code := nw_code[1:chain_nw];
                nw_pending := nw_pending[1:chain_nw]; nw_timeout := nw_timeout[1:chain_nw];
                nw_expires := nw_expires[1:chain_nw]; nw_reversal := nw_reversal[1:chain_nw];
                nw_metadata := nw_metadata[1:chain_nw]; nw_hash := nw_hash[1:chain_nw];
                nw_resolved := nw_resolved[1:chain_nw];
                resolved_db := resolved_db[1:chain_resolved_db];
            END IF;
            FOR k IN chain_first .. n LOOP
                out_result[k] := 'linked_event_chain_open'; out_created[k] := NULL; out_amount[k] := NULL;
            END LOOP;
        END IF;
    END LOOP;

    -- 6. Write what succeeded, in bulk: in id order with seq in batch order, as on the fast path.
    --    This path holds its account rows already, so it must not wait for another call that is
    --    inserting one of the same ids: that call may be a fast path waiting for these rows (a
    --    cycle). A short lock timeout turns such a wait into an error the service retries (the call
    --    is idempotent), by which time the other call has committed or rolled back.
    IF cardinality(nw_ids) > 0 THEN
        saved_lock_timeout := current_setting('lock_timeout');
        PERFORM set_config('lock_timeout', '200ms', true);
        INSERT INTO ledger.transfers (seq, id, type, debit_account_id, credit_account_id, amount_minor,
                                      currency, code, pending_id, timeout_s, expires_at, reversal_of, metadata,
                                      request_hash, created_at)
        OVERRIDING SYSTEM VALUE
        SELECT u.*, p_now
          FROM (SELECT nextval('ledger.transfers_seq_seq'::regclass) AS seq, v.*
                  FROM unnest(nw_ids, nw_type, nw_debit, nw_credit, nw_amount, nw_currency, nw_code,
                              nw_pending, nw_timeout, nw_expires, nw_reversal, nw_metadata, nw_hash)
                       AS v(id, type, debit, credit, amount, currency, code, pending_id, timeout_s, expires_at,
                            reversal_of, metadata, hash)
                OFFSET 0) u
         ORDER BY u.id;
        PERFORM set_config('lock_timeout', saved_lock_timeout, true);
        INSERT INTO ledger.open_holds (transfer_id, expires_at)
        SELECT u.id, u.expires FROM unnest(nw_ids, nw_type, nw_expires, nw_resolved) AS u(id, type, expires, resolved)
         WHERE u.type = 'pending' AND NOT u.resolved;
        IF cardinality(resolved_db) > 0 THEN
            DELETE FROM ledger.open_holds h WHERE h.transfer_id = ANY (resolved_db);
        END IF;
        INSERT INTO platform.outbox (event_id, topic, payload, created_at)
        VALUES (gen_random_uuid(), 'ledger.transfers_created',
                jsonb_build_object('count', cardinality(nw_ids), 'id', to_jsonb(nw_ids), 'type', to_jsonb(nw_type),
                    'debit_account_id', to_jsonb(nw_debit), 'credit_account_id', to_jsonb(nw_credit),
                    'amount_minor', to_jsonb(nw_amount), 'currency', to_jsonb(nw_currency),
                    'code', to_jsonb(nw_code), 'pending_id', to_jsonb(nw_pending)),
                p_now);
    END IF;

    RETURN QUERY SELECT o.i::integer, o.res, o.created, o.amount
                   FROM unnest(out_result, out_created, out_amount) WITH ORDINALITY AS o(res, created, amount, i);
END
$fn$;
