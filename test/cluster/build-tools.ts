// Builds the control-plane binaries into the cache (work in progress).
import type { ToolName } from './tools.ts';

export async function buildTools(names: readonly ToolName[]): Promise<void> {
  throw new Error(`building ${names.join(', ')} is not implemented yet`);
}
