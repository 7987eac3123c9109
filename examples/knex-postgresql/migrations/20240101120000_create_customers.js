// Customers of the shop.
exports.up = (knex) =>
  knex.schema.createTable('customers', (table) => {
    table.bigIncrements('id');
    table.string('name', 200).notNullable();
    table.string('email', 320).notNullable().unique();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

exports.down = (knex) => knex.schema.dropTable('customers');
