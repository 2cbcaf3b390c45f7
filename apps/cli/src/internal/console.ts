/**
 * A `Console` that writes whole lines through one function: used to strip ANSI styling when the
 * output is not a terminal (@effect/cli styles its help and errors unconditionally), and by
 * tests to capture what a command prints.
 */
import { Console, Effect } from "effect"
import { format } from "node:util"

/** Where a line goes. */
export type Stream = "stdout" | "stderr"

// eslint-disable-next-line no-control-regex
const ansi = /\u001b\[[0-9;]*[A-Za-z]/g

/** `text` without ANSI escape sequences. */
export const stripAnsi = (text: string): string => text.replace(ansi, "")

/** A console that hands every printed line (formatted as `console.log` would) to `write`. */
export const make = (write: (stream: Stream, text: string) => void): Console.Console => {
  const out = (...args: ReadonlyArray<unknown>): void => write("stdout", format(...args))
  const err = (...args: ReadonlyArray<unknown>): void => write("stderr", format(...args))
  const assert = (condition: boolean, ...args: ReadonlyArray<unknown>): void => {
    if (!condition) err("Assertion failed", ...args)
  }
  const one = (item: unknown): void => out(item)
  const noop = (): void => {}
  const unsafe: Console.UnsafeConsole = {
    assert, clear: noop, count: noop, countReset: noop, debug: err, dir: one, dirxml: out, error: err,
    group: noop, groupCollapsed: noop, groupEnd: noop, info: out, log: out, table: one,
    time: noop, timeEnd: noop, timeLog: noop, trace: err, warn: err
  }
  const lift = <Args extends ReadonlyArray<unknown>>(f: (...args: Args) => void) => (...args: Args): Effect.Effect<void> => Effect.sync(() => f(...args))
  return {
    [Console.TypeId]: Console.TypeId,
    assert: lift(assert),
    clear: Effect.void,
    count: lift(noop),
    countReset: lift(noop),
    debug: lift(err),
    dir: lift(one),
    dirxml: lift(out),
    error: lift(err),
    group: lift(noop),
    groupEnd: Effect.void,
    info: lift(out),
    log: lift(out),
    table: lift(one),
    time: lift(noop),
    timeEnd: lift(noop),
    timeLog: lift(noop),
    trace: lift(err),
    warn: lift(err),
    unsafe
  }
}

/** The process's stdout and stderr, with ANSI styling stripped when `color` is off. */
export const processConsole = (color: boolean): Console.Console =>
  make((stream, text) => {
    process[stream].write(`${color ? text : stripAnsi(text)}\n`)
  })
