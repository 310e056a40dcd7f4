// The upstream service of the compose stack: JSON with fake personal data for the LeakSignal filter in
// front of it to find. Every value is made up (example.com addresses, 555 phone numbers, test card numbers).
const { createServer } = require("node:http");

const users = [
  { id: 1, name: "Ada Example", email: "ada@example.com", ssn: "123-45-6789", phone: "(555) 010-4477" },
  { id: 2, name: "Bo Sample", email: "bo.sample@example.com", ssn: "987-65-4320", phone: "(555) 010-9312" },
];
const orders = [
  { id: 41, user: 1, card: "4111 1111 1111 1111", email: "ada@example.com", total: 42.5 },
  { id: 42, user: 2, card: "4012-8888-8888-1881", email: "bo.sample@example.com", total: 7.25 },
];
const routes = { "/api/users": users, "/api/orders": orders, "/healthz": { ok: true } };

createServer((request, response) => {
  const body = routes[(request.url ?? "/").split("?")[0]];
  response.writeHead(body ? 200 : 404, { "content-type": "application/json" });
  response.end(JSON.stringify(body ?? { error: "not found" }));
}).listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? "0.0.0.0", function () {
  console.log(`upstream listening on ${this.address().port}`);
});
