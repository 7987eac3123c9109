// Prisma Migrate through a driver adapter: the CLI then runs its WebAssembly
// schema engine (bundled in the `prisma` package) and talks to PostgreSQL with
// the `pg` driver, instead of a native schema engine that Prisma downloads on
// first use. The image needs no download at build or run time.
import { PrismaPg } from '@prisma/adapter-pg';
import { defineConfig } from 'prisma/config';

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  // DATABASE_URL comes from the Secret. allowExitOnIdle: without it the idle
  // pool keeps the CLI alive for another 10 s after the work is done.
  adapter: async () =>
    new PrismaPg({ connectionString: process.env.DATABASE_URL, allowExitOnIdle: true }),
});
