// sequelize-cli reads the database from DATABASE_URL, which Lockstep's migration
// Job (and the application's own pods) get from the Secret. A mysql:// URL uses
// the mysql2 driver, which speaks to MariaDB as well.
//
// LOCKSTEP_RUN_MARK_SQL is set by Lockstep in migration Jobs on MySQL/MariaDB: every
// connection that runs it holds the run's mark, so that if this pod dies mid-migration the
// next run can find and end the statement it left running on the server, instead of
// migrating beside it (docs/guarantees.md). Outside a migration Job it is unset.
const runMarkSql = process.env.LOCKSTEP_RUN_MARK_SQL;

const takeRunMark = (connection) =>
  new Promise((resolve, reject) => {
    connection.query(runMarkSql, (error) => (error ? reject(error) : resolve()));
  });

const fromEnvironment = {
  use_env_variable: 'DATABASE_URL',
  logging: false,
  hooks: runMarkSql ? { afterConnect: takeRunMark } : {},
};

module.exports = {
  development: fromEnvironment,
  test: fromEnvironment,
  production: fromEnvironment,
};
