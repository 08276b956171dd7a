//! How an operation of [`SqlStore`] gets its connection and builds its statements: the one
//! place that knows about a transaction-mode pooler (`database.pooler = "transaction"`), where
//! every operation must run in a transaction and no statement may be cached per connection.
//! Most operations are a single statement; [`SqlStore::execute`] and the `fetch_*` helpers run
//! one on a connection of its own and finish that connection, so callers write only the SQL.

use sqlx::{Executor, IntoArguments, query::Query};

use super::{Dialect, Result, SqlStore};

/// A statement with its values bound, ready to run.
pub(super) type Statement<DB> = Query<'static, DB, <DB as sqlx::Database>::Arguments>;

impl<DB: Dialect> SqlStore<DB> {
    /// A query as this store runs it: prepared once per connection and cached, except behind
    /// a transaction-mode pooler, where the next transaction may run on another server
    /// connection that never saw the statement (the unnamed statement lives one transaction).
    pub(super) fn q(&self, sql: &'static str) -> Statement<DB> {
        sqlx::query(sql).persistent(!self.pooled)
    }

    /// A query whose SQL is built at run time from fixed parts (a column name chosen from a
    /// fixed set, a shared column list), cached like [`SqlStore::q`]'s.
    pub(super) fn q_built(&self, sql: String) -> Statement<DB> {
        sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(!self.pooled)
    }

    /// A connection for one operation; finish it with [`Conn::done`].
    pub(super) async fn conn(&self) -> Result<Conn<DB>> {
        Ok(if self.pooled {
            Conn::Tx(self.pool.begin().await?)
        } else {
            Conn::Plain(self.pool.acquire().await?)
        })
    }

    /// A transaction that holds the write lock from its start (SQLite `BEGIN IMMEDIATE`).
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, DB>> {
        Ok(self.pool.begin_with(DB::BEGIN_WRITE).await?)
    }
}

/// One statement, one operation: each takes a connection from [`SqlStore::conn`], runs the
/// statement and finishes the connection (commits behind a pooler).
impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
{
    /// Runs a statement that returns no rows.
    pub(super) async fn execute(&self, statement: Statement<DB>) -> Result<()> {
        let mut c = self.conn().await?;
        statement.execute(c.get()).await?;
        c.done().await
    }

    /// Runs a statement and returns every row.
    pub(super) async fn fetch_all(&self, statement: Statement<DB>) -> Result<Vec<DB::Row>> {
        let mut c = self.conn().await?;
        let rows = statement.fetch_all(c.get()).await?;
        c.done().await?;
        Ok(rows)
    }

    /// Runs a statement and returns its row, if any.
    pub(super) async fn fetch_optional(&self, statement: Statement<DB>) -> Result<Option<DB::Row>> {
        let mut c = self.conn().await?;
        let row = statement.fetch_optional(c.get()).await?;
        c.done().await?;
        Ok(row)
    }
}

/// A connection for one operation: straight from the pool, or, behind a transaction-mode
/// pooler, a transaction, the only span for which the pooler keeps one server connection ours
/// (a statement is parsed and executed in two round trips, which must reach the same server).
/// Dropped without [`Conn::done`] (an error), the transaction rolls back.
pub(super) enum Conn<DB: sqlx::Database> {
    Plain(sqlx::pool::PoolConnection<DB>),
    Tx(sqlx::Transaction<'static, DB>),
}

impl<DB: sqlx::Database> Conn<DB> {
    pub(super) fn get(&mut self) -> &mut DB::Connection {
        match self {
            Conn::Plain(c) => c,
            Conn::Tx(t) => t,
        }
    }

    pub(super) async fn done(self) -> Result<()> {
        if let Conn::Tx(t) = self {
            t.commit().await?;
        }
        Ok(())
    }
}
