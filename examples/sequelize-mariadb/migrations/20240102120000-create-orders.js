'use strict';

// One row per order; an order belongs to one customer.
module.exports = {
  async up(queryInterface, Sequelize) {
    await queryInterface.createTable('orders', {
      id: { type: Sequelize.BIGINT, primaryKey: true, autoIncrement: true },
      customer_id: {
        type: Sequelize.BIGINT,
        allowNull: false,
        references: { model: 'customers', key: 'id' },
      },
      total_cents: { type: Sequelize.INTEGER, allowNull: false },
      placed_at: {
        type: Sequelize.DATE,
        allowNull: false,
        defaultValue: Sequelize.literal('CURRENT_TIMESTAMP'),
      },
    });
    await queryInterface.addIndex('orders', ['customer_id'], { name: 'orders_by_customer' });
  },

  async down(queryInterface) {
    await queryInterface.dropTable('orders');
  },
};
