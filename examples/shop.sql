-- A small sample database for the demo: customers, products, orders with their lines.
CREATE TABLE customers (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email      text NOT NULL UNIQUE,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
  id    serial PRIMARY KEY,
  sku   text NOT NULL UNIQUE,
  title text NOT NULL,
  price numeric(10,2) NOT NULL CHECK (price >= 0),
  tags  text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE orders (
  id          bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers(id),
  status      text NOT NULL DEFAULT 'new',
  placed_at   timestamptz NOT NULL DEFAULT now(),
  meta        jsonb
);
CREATE TABLE order_lines (
  order_id   bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  line_no    int NOT NULL,
  product_id int NOT NULL REFERENCES products(id),
  quantity   int NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (order_id, line_no)
);
CREATE INDEX orders_customer_idx ON orders (customer_id, placed_at DESC);
CREATE VIEW order_totals AS
  SELECT o.id AS order_id, sum(l.quantity * p.price) AS total
  FROM orders o JOIN order_lines l ON l.order_id = o.id JOIN products p ON p.id = l.product_id
  GROUP BY o.id;

INSERT INTO customers (email, name)
  SELECT 'customer' || g || '@example.com', 'Customer ' || g FROM generate_series(1, 2000) g;
INSERT INTO products (sku, title, price, tags)
  SELECT 'SKU-' || g, 'Product ' || g, (g % 500) + 0.99, ARRAY['tag' || (g % 7)] FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, status, meta)
  SELECT 1 + (g % 2000), CASE WHEN g % 10 = 0 THEN 'shipped' ELSE 'new' END,
         jsonb_build_object('channel', CASE WHEN g % 3 = 0 THEN 'web' ELSE 'store' END)
  FROM generate_series(1, 20000) g;
INSERT INTO order_lines (order_id, line_no, product_id, quantity)
  SELECT o, l, 1 + ((o * 7 + l) % 500), 1 + (o + l) % 5
  FROM generate_series(1, 20000) o, generate_series(1, 3) l;
