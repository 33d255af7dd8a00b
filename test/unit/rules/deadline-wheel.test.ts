import { describe, expect, it } from 'vitest'
import { createDeadlineWheel, type WheelNode } from '../../../src/rules/deadline-wheel.ts'

interface Node extends WheelNode {
  name: string
  deadline: number
}

function node(name: string, deadline: number): Node {
  return { name, deadline, wheelSlot: -1, wheelPrev: null, wheelNext: null }
}

function setup(startMs = 0) {
  const wheel = createDeadlineWheel<Node>({ resolutionMs: 100, slots: 8, startMs })
  const fired: string[] = []
  const advance = (now: number) =>
    wheel.advance(
      now,
      (n) => n.deadline,
      (n, at) => fired.push(`${n.name}@${at}`),
    )
  return { wheel, fired, advance }
}

describe('deadline wheel', () => {
  it('fires each node once when its deadline has passed, in deadline order', () => {
    const { wheel, fired, advance } = setup()
    const nodes = [node('c', 250), node('a', 120), node('b', 180), node('d', 90_000)]
    for (const n of nodes) wheel.link(n, n.deadline)
    expect(wheel.size()).toBe(4)
    advance(119)
    expect(fired).toEqual([])
    advance(200)
    expect(fired).toEqual(['a@120', 'b@180'])
    advance(5_000) // many laps behind: one lap visits every slot
    expect(fired).toEqual(['a@120', 'b@180', 'c@250'])
    expect(wheel.size()).toBe(1)
    advance(90_000)
    expect(fired).toEqual(['a@120', 'b@180', 'c@250', 'd@90000'])
    expect(wheel.size()).toBe(0)
  })

  it('re-arms lazily: a moved deadline is relinked when its old slot comes round', () => {
    const { wheel, fired, advance } = setup()
    const n = node('n', 300)
    wheel.link(n, n.deadline)
    n.deadline = 1_000 // the owner just moves the deadline
    advance(400)
    expect(fired).toEqual([])
    expect(wheel.relinks()).toBe(1)
    advance(1_000)
    expect(fired).toEqual(['n@1000'])
  })

  it('unlink is O(1) from anywhere in a slot list, and a no-op when not linked', () => {
    const { wheel, fired, advance } = setup()
    const a = node('a', 150)
    const b = node('b', 160)
    const c = node('c', 170)
    for (const n of [a, b, c]) wheel.link(n, n.deadline)
    wheel.unlink(b)
    wheel.unlink(b)
    expect(wheel.size()).toBe(2)
    advance(200)
    expect(fired).toEqual(['a@150', 'c@170'])
  })

  it('a deadline already past when linked fires on the next tick', () => {
    const { wheel, fired, advance } = setup(1_000)
    wheel.link(node('late', 10), 10)
    advance(1_050) // same tick as the start: nothing processed
    expect(fired).toEqual([])
    advance(1_100)
    expect(fired).toEqual(['late@10'])
  })

  it('NaN from deadlineOf drops the node; time going back does nothing', () => {
    const { wheel, fired, advance } = setup()
    const n = node('n', 100)
    wheel.link(n, 100)
    n.deadline = Number.NaN
    advance(500)
    expect(fired).toEqual([])
    expect(wheel.size()).toBe(0)
    advance(100)
    expect(fired).toEqual([])
  })
})
