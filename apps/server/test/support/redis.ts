/** A private `redis-server` on a free loopback port (nothing shared with other suites); see store-objects' helper. */
export { spawnRedis, type RedisServer, redisServerBinary } from "../../../../packages/store-objects/test/redisServer.js"
