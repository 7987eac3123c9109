// Knex reads the database from DATABASE_URL, which Lockstep's migration Job (and
// the application's own pods) get from the Secret. One config for every
// environment: the URL is what differs between them. The migrations are
// portable, so the URL's scheme also picks the driver (pg, or mysql2 for
// MySQL/MariaDB).
const url = process.env.DATABASE_URL || '';
const mysql = /^(mysql|mariadb)(\+[a-z0-9]+)?:/.test(url);

module.exports = {
  client: mysql ? 'mysql2' : 'pg',
  // mysql2 only parses mysql:// URLs.
  connection: mysql ? url.replace(/^[a-z0-9+]+:/, 'mysql:') : url,
  migrations: { directory: './migrations', tableName: 'knex_migrations' },
};
