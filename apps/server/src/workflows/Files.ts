/** Workflow definitions from files: JSON or YAML (`.yaml`, `.yml`), for the CLI and other callers with files. */
import { Either } from "effect"
import * as YAML from "yaml"

/** The parsed content of a definition file, or why it cannot be read (YAML is a superset of JSON, so both parse here). */
export const parseDefinitionText = (text: string, file: string): Either.Either<unknown, string> => {
  if (/\.json$/i.test(file)) {
    try {
      return Either.right(JSON.parse(text) as unknown)
    } catch (e) {
      return Either.left(`${file} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    return Either.left(`${file} is not valid YAML: ${doc.errors.map((e) => e.message.split("\n")[0] ?? e.message).join("; ")}`)
  }
  return Either.right(doc.toJS() as unknown)
}
