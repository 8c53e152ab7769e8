/** The message `f` throws with, exactly, or a sentence saying nothing was thrown. */
export const thrownMessage = (f: () => unknown): string => {
  try {
    f()
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
  return "(nothing was thrown)"
}
