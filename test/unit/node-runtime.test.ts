import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

/**
 * The Node.js the project asks for is said in three places a user reads: package.json's
 * `engines`, the Docker image and the README's quick start. They must agree, and name a release
 * line that is still maintained (Node 20 reached end of life in April 2026).
 */
const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8')

const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node
const imageMajors = [...read('Dockerfile').matchAll(/^FROM node:(\d+)-/gm)].map((m) => Number(m[1]))
const readmeMajor = Number(/^Node\.js (\d+) \(the active LTS/m.exec(read('README.md'))?.[1])

describe('the Node.js the project asks for', () => {
  it('engines names a maintained release line as the minimum', () => {
    const minimum = Number(/^>=(\d+)$/.exec(engines)?.[1])
    expect(engines).toMatch(/^>=\d+$/)
    expect(minimum).toBeGreaterThanOrEqual(22)
  })

  it('every stage of the Docker image runs the Node the README recommends', () => {
    expect(imageMajors.length).toBeGreaterThanOrEqual(2)
    expect(new Set(imageMajors)).toEqual(new Set([readmeMajor]))
    expect(readmeMajor).toBeGreaterThanOrEqual(Number(/\d+/.exec(engines)?.[0]))
  })
})
