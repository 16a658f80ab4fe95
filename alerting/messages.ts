import type { Severity } from './rules.ts'

const ADVICE: Record<Severity, string> = {
  critical: 'Sit quietly, measure again after 5 minutes; if it stays this high or you have chest pain, shortness of breath, weakness or trouble speaking, seek emergency care now.',
  warning: 'Rest and measure again after 5 minutes. If it stays out of range, contact your doctor.',
  info: 'No action needed now; keep measuring as planned.',
}

/** The human message a resident reads. */
export function alertMessage (title: string, detail: string, severity: Severity): string {
  return `${title}: ${detail}. ${ADVICE[severity]}`
}
