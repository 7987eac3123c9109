// One row per order; an order belongs to one customer.
exports.up = (knex) =>
  knex.schema.createTable('orders', (table) => {
    table.bigIncrements('id');
    // unsigned: bigIncrements is unsigned on MySQL/MariaDB (PostgreSQL ignores it).
    table.bigInteger('customer_id').unsigned().notNullable().references('customers.id');
    table.integer('total_cents').notNullable().checkPositive();
    table.timestamp('placed_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.index(['customer_id'], 'orders_by_customer');
  });

exports.down = (knex) => knex.schema.dropTable('orders');
