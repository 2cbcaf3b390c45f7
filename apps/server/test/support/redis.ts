/** A private `redis-server` on a free loopback port (nothing shared with other suites), and a free-port finder; see store-objects' helper. */
export { freePort, spawnRedis, type RedisServer, redisServerBinary } from "../../../../packages/store-objects/test/redisServer.js"
