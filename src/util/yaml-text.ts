import { LineCounter, parseDocument } from 'yaml'

export type YamlResult = { ok: true; data: unknown } | { ok: false; errors: string[] }

/** Parses YAML text; every syntax error is reported as `file:line:col: message`. Never throws. */
export function parseYamlText(text: string, fileName: string): YamlResult {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false })
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((err) => {
        const { line, col } = lineCounter.linePos(err.pos[0])
        return `${fileName}:${line}:${col}: ${err.message}`
      }),
    }
  }
  return { ok: true, data: doc.toJS() }
}
