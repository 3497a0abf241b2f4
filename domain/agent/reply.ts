import { formatErrorObservation, ignoredCallsNote, toolCallErrorObservation } from './observations';
import { type ToolAction, toToolAction } from './toolActions';
import { parseToolCall, type ToolCall } from './toolCall';

/**
 * A model reply read as the scaffold reads it: the action to run, or the observation that says why nothing
 * ran. Any text at all gives one of the two, so a malformed reply costs a step, never the episode.
 */
export type InterpretedReply =
  | {
      kind: 'action';
      thought: string;
      call: ToolCall;
      action: ToolAction;
      /** To append to the action's observation: more calls followed the first and were ignored. */
      note: string | null;
    }
  | {
      kind: 'rejected';
      thought: string;
      /** The parsed call when the reply parsed but the call was not valid. */
      call: ToolCall | null;
      /** The `FormatError` or `ToolCallError` kind, for the trajectory. */
      error: string;
      observation: string;
    };

export function interpretReply(reply: string): InterpretedReply {
  const parsed = parseToolCall(reply);
  if (!parsed.ok) {
    return {
      kind: 'rejected',
      thought: parsed.thought,
      call: null,
      error: parsed.error.kind,
      observation: formatErrorObservation(parsed.error),
    };
  }
  const note = ignoredCallsNote(parsed.ignoredCalls);
  const checked = toToolAction(parsed.call);
  if (!checked.ok) {
    const observation = toolCallErrorObservation(checked.error);
    return {
      kind: 'rejected',
      thought: parsed.thought,
      call: parsed.call,
      error: checked.error.kind,
      observation: note ? `${observation}\n\n${note}` : observation,
    };
  }
  return { kind: 'action', thought: parsed.thought, call: parsed.call, action: checked.action, note };
}
