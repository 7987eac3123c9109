-- One row per order; an order belongs to one customer.
CREATE TABLE orders (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    total_cents INT NOT NULL CHECK (total_cents >= 0),
    placed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id),
    INDEX orders_by_customer (customer_id)
) ENGINE = InnoDB;
