import { readFile, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type RulesWatcher, watchRulesFile } from '../../../src/rules/rules-watcher.ts'
import { captureLogs } from '../../helpers/log-capture.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

/** The watcher with a tiny loader (a number per file) standing in for the rules parser. */
describe('rules file watcher', () => {
  let dir: TempDir
  let file: string
  let watcher: RulesWatcher | null = null
  const applied: number[] = []
  const { log, lines } = captureLogs('info')

  const load = async () => {
    const value = Number((await readFile(file, 'utf8')).trim())
    if (!Number.isFinite(value)) throw new Error(`rules.txt: not a number`)
    return value
  }

  beforeEach(async () => {
    dir = await createTempDir('rules-watch-')
    file = path.join(dir.path, 'rules.txt')
    await writeFile(file, '1')
    applied.length = 0
    lines.length = 0
  })
  afterEach(async () => {
    watcher?.close()
    watcher = null
    await dir.remove()
  })

  it('applies an edit, once per save', async () => {
    watcher = watchRulesFile({ log, load, apply: (n) => applied.push(n) }, { file, debounceMs: 50 })
    await writeFile(file, '2')
    await vi.waitFor(() => expect(applied).toEqual([2]), { timeout: 2_000, interval: 10 })
  })

  it('follows an editor that saves by renaming a new file over the old one', async () => {
    watcher = watchRulesFile({ log, load, apply: (n) => applied.push(n) }, { file, debounceMs: 50 })
    const temp = path.join(dir.path, '.rules.txt.swp')
    await writeFile(temp, '3')
    await rename(temp, file)
    await vi.waitFor(() => expect(applied).toEqual([3]), { timeout: 2_000, interval: 10 })
    await writeFile(temp, '4')
    await rename(temp, file)
    await vi.waitFor(() => expect(applied).toEqual([3, 4]), { timeout: 2_000, interval: 10 })
  })

  it('keeps the rules in force when the file is invalid, and says why', async () => {
    watcher = watchRulesFile({ log, load, apply: (n) => applied.push(n) }, { file, debounceMs: 50 })
    await writeFile(file, 'three')
    await vi.waitFor(
      () =>
        expect(
          lines.some((l) => l.msg === 'rules file rejected; the rules in force are kept'),
        ).toBe(true),
      {
        timeout: 2_000,
        interval: 10,
      },
    )
    expect(applied).toEqual([])
    expect(lines.find((l) => l.level === 50)).toMatchObject({
      problems: 'rules.txt: not a number',
      file,
    })
    expect(await watcher.reload()).toBe(false)
  })

  it('ignores other files in the folder and stops on close', async () => {
    watcher = watchRulesFile({ log, load, apply: (n) => applied.push(n) }, { file, debounceMs: 50 })
    await writeFile(path.join(dir.path, 'other.txt'), '9')
    expect(await watcher.reload()).toBe(true)
    expect(applied).toEqual([1])
    watcher.close()
    await writeFile(file, '5')
    expect(await watcher.reload()).toBe(false)
    expect(applied).toEqual([1])
  })
})
