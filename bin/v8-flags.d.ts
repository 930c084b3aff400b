export function v8Flags(execArgv: readonly string[], nodeOptions?: string): string[]
