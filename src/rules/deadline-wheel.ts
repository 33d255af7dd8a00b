/**
 * A hashed timer wheel for many deadlines at a coarse resolution: the deadman rules' silence
 * deadlines, one per watched key, all in one structure (no timer per key).
 *
 * Time is cut into ticks of `resolutionMs`; a node with deadline d lives in slot
 * floor(d / resolution) mod `slots`, in an intrusive doubly linked list (the node carries its own
 * links), so linking and unlinking are O(1) and allocate nothing. `advance(now)` visits the slots
 * of the ticks passed since the last call (at most one revolution) and asks each node for its
 * current deadline: due nodes are unlinked and expired, the others move to the slot of their
 * deadline. Deadlines further out than one revolution simply stay for another lap.
 *
 * Re-arming is lazy: the owner of a node just moves the node's deadline forward (a field write)
 * and the wheel relinks it when it visits the old slot. That keeps a reading's cost O(1) with no
 * list surgery, and a node is relinked at most once per deadline period.
 */
export interface WheelNode {
  /** Slot index while linked, -1 when not in the wheel. */
  wheelSlot: number
  wheelPrev: WheelNode | null
  wheelNext: WheelNode | null
}

export interface DeadlineWheel<N extends WheelNode> {
  /** Links `node` to fire at `deadlineMs` (or on the next tick if that has passed). O(1). */
  link(node: N, deadlineMs: number): void
  /** Takes `node` out of the wheel; a no-op when it is not in. O(1). */
  unlink(node: N): void
  /**
   * Processes every tick up to `nowMs`. `deadlineOf` gives a node's current deadline (NaN drops
   * the node); nodes due (deadline <= now) are unlinked and passed to `expire` in deadline order
   * per slot. Calls with a time not past the last processed tick do nothing.
   */
  advance(
    nowMs: number,
    deadlineOf: (node: N) => number,
    expire: (node: N, deadlineMs: number) => void,
  ): void
  /** Nodes linked now. */
  size(): number
  /** Nodes moved to a later slot by `advance` since creation (lazy re-arms). */
  relinks(): number
}

export function createDeadlineWheel<N extends WheelNode>(options: {
  resolutionMs: number
  slots: number
  startMs: number
}): DeadlineWheel<N> {
  const { resolutionMs, slots } = options
  const heads: Array<N | null> = new Array(slots).fill(null)
  const tails: Array<N | null> = new Array(slots).fill(null)
  /** Last tick processed; nodes are never linked at or before it. */
  let cursor = Math.floor(options.startMs / resolutionMs)
  let count = 0
  let relinked = 0
  // Reused between advance() calls: the nodes of the slot being processed.
  const batch: N[] = []
  const due: Array<{ node: N; deadline: number }> = []

  function link(node: N, deadlineMs: number): void {
    if (node.wheelSlot >= 0) unlink(node)
    const tick = Math.max(Math.floor(deadlineMs / resolutionMs), cursor + 1)
    const slot = ((tick % slots) + slots) % slots
    node.wheelSlot = slot
    node.wheelNext = null
    const tail = tails[slot] ?? null
    node.wheelPrev = tail
    if (tail === null) heads[slot] = node
    else tail.wheelNext = node
    tails[slot] = node
    count++
  }

  function unlink(node: N): void {
    const slot = node.wheelSlot
    if (slot < 0) return
    const prev = node.wheelPrev as N | null
    const next = node.wheelNext as N | null
    if (prev === null) heads[slot] = next
    else prev.wheelNext = next
    if (next === null) tails[slot] = prev
    else next.wheelPrev = prev
    node.wheelSlot = -1
    node.wheelPrev = null
    node.wheelNext = null
    count--
  }

  function processSlot(
    slot: number,
    nowMs: number,
    deadlineOf: (node: N) => number,
    expire: (node: N, deadlineMs: number) => void,
  ): void {
    // Detach the whole slot first: expire() may link and unlink nodes (a listener reacting to an
    // alert), and nodes relinked into this very slot must wait for the next lap.
    batch.length = 0
    for (let node = heads[slot] ?? null; node !== null; node = node.wheelNext as N | null) {
      batch.push(node)
    }
    for (const node of batch) unlink(node)
    due.length = 0
    for (const node of batch) {
      const deadline = deadlineOf(node)
      if (Number.isNaN(deadline)) continue
      if (deadline <= nowMs) due.push({ node, deadline })
      else {
        link(node, deadline)
        relinked++
      }
    }
    batch.length = 0
    if (due.length === 0) return
    if (due.length > 1) due.sort((a, b) => a.deadline - b.deadline)
    const expiring = due.splice(0)
    for (const { node, deadline } of expiring) {
      // Skip a node that expire() of an earlier one put back into the wheel.
      if (node.wheelSlot < 0) expire(node, deadline)
    }
  }

  return {
    link,
    unlink,
    advance(nowMs, deadlineOf, expire) {
      const target = Math.floor(nowMs / resolutionMs)
      if (!(target > cursor)) return
      // More than one revolution behind: one lap visits every slot once.
      const first = Math.max(cursor + 1, target - slots + 1)
      for (let tick = first; tick <= target; tick++) {
        cursor = tick
        processSlot(((tick % slots) + slots) % slots, nowMs, deadlineOf, expire)
      }
    },
    size: () => count,
    relinks: () => relinked,
  }
}
