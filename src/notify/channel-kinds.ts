import type { ChannelKind } from './types.ts'

/** Kind name -> kind, as the notifications loader looks them up. */
export type ChannelKindRegistry = ReadonlyMap<string, ChannelKind>

/**
 * `kind: custom` channels name a module (`module: ./config/channels/x.ts`) whose default export is
 * a ChannelKind; it is not in the registry, the loader imports it (as custom rule handlers).
 */
export const CUSTOM_CHANNEL_KIND = 'custom'

/**
 * The built-in kinds. A new kind is one module under `channels/` and one entry here; neither the
 * loader nor the outbox changes.
 */
export const BUILT_IN_CHANNEL_KINDS: ChannelKindRegistry = new Map<string, ChannelKind>(
  ([] as ChannelKind[]).map((kind) => [kind.kind, kind]),
)
