// sequelize-cli reads the database from DATABASE_URL, which Lockstep's migration
// Job (and the application's own pods) get from the Secret. A mysql:// URL uses
// the mysql2 driver, which speaks to MariaDB as well.
const fromEnvironment = { use_env_variable: 'DATABASE_URL', logging: false };

module.exports = {
  development: fromEnvironment,
  test: fromEnvironment,
  production: fromEnvironment,
};
