/** The port's own in-memory store passes the adapters' contract, so tests on it mean something. */
import { ObjectStore } from "@tidyllm/session-manager"
import { objectStoreContract } from "./objectStoreContract.js"

objectStoreContract("memory", ObjectStore.layerMemory)
