/** Kubernetes time: metav1.Time as the API writes it, RFC 3339 in UTC with whole seconds. */
export const kubeTime = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, "Z")
