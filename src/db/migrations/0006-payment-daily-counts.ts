import { type Kysely, sql } from 'kysely'

/**
 * Exact list totals without counting every row: active payments counted per
 * environment, status and UTC day of `created_at`, kept by triggers in the
 * transaction that changes a payment. A list's total is then the sum over the days
 * its range covers whole, plus an index count of the two partial days at its ends.
 *
 * Each backend adds to its own shard of a (environment, status, day) counter
 * (`pg_backend_pid() % 32`), so concurrent payments on the same day do not queue
 * on one counter row's lock.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table payment_daily_counts (
      environment_id text not null,
      payment_status text not null,
      day date not null,
      shard smallint not null,
      n bigint not null,
      primary key (environment_id, payment_status, day, shard)
    );

    insert into payment_daily_counts (environment_id, payment_status, day, shard, n)
      select environment_id, payment_status, (created_at at time zone 'UTC')::date, 0, count(*)
      from payments where active group by 1, 2, 3;

    -- Inserts and deletes: one upsert per (environment, status, day) of the statement's rows.
    create function payment_daily_counts_statement() returns trigger language plpgsql as $$
    begin
      if tg_op = 'INSERT' then
        insert into payment_daily_counts as c (environment_id, payment_status, day, shard, n)
          select environment_id, payment_status, (created_at at time zone 'UTC')::date,
                 pg_backend_pid() % 32, count(*)
          from new_rows where active group by 1, 2, 3
          on conflict (environment_id, payment_status, day, shard) do update set n = c.n + excluded.n;
      else
        insert into payment_daily_counts as c (environment_id, payment_status, day, shard, n)
          select environment_id, payment_status, (created_at at time zone 'UTC')::date,
                 pg_backend_pid() % 32, -count(*)
          from old_rows where active group by 1, 2, 3
          on conflict (environment_id, payment_status, day, shard) do update set n = c.n + excluded.n;
      end if;
      return null;
    end $$;

    -- Updates: only rows whose status, activity or day changed (the trigger's WHEN).
    create function payment_daily_counts_row() returns trigger language plpgsql as $$
    begin
      if old.active then
        insert into payment_daily_counts as c (environment_id, payment_status, day, shard, n)
          values (old.environment_id, old.payment_status, (old.created_at at time zone 'UTC')::date,
                  pg_backend_pid() % 32, -1)
          on conflict (environment_id, payment_status, day, shard) do update set n = c.n - 1;
      end if;
      if new.active then
        insert into payment_daily_counts as c (environment_id, payment_status, day, shard, n)
          values (new.environment_id, new.payment_status, (new.created_at at time zone 'UTC')::date,
                  pg_backend_pid() % 32, 1)
          on conflict (environment_id, payment_status, day, shard) do update set n = c.n + 1;
      end if;
      return null;
    end $$;

    create trigger payments_count_insert after insert on payments
      referencing new table as new_rows
      for each statement execute function payment_daily_counts_statement();
    create trigger payments_count_delete after delete on payments
      referencing old table as old_rows
      for each statement execute function payment_daily_counts_statement();
    create trigger payments_count_update after update on payments
      for each row
      when (old.payment_status is distinct from new.payment_status
            or old.active is distinct from new.active
            or old.created_at is distinct from new.created_at
            or old.environment_id is distinct from new.environment_id)
      execute function payment_daily_counts_row();
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop trigger payments_count_update on payments;
    drop trigger payments_count_delete on payments;
    drop trigger payments_count_insert on payments;
    drop function payment_daily_counts_row();
    drop function payment_daily_counts_statement();
    drop table payment_daily_counts;
  `.execute(db)
}
