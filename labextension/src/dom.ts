/** A small element builder for the views: no innerHTML anywhere, so server text is inert. */

export type Child = Node | string | null | undefined | false;

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  data?: Record<string, string>;
  attrs?: Record<string, string>;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) {
    el.className = props.class;
  }
  if (props.text !== undefined) {
    el.textContent = props.text;
  }
  if (props.title) {
    el.title = props.title;
  }
  for (const [name, value] of Object.entries(props.data ?? {})) {
    el.dataset[name] = value;
  }
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    el.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      el.append(child);
    }
  }
  return el;
}

/** Sets text only when it differs, so polling does not touch unchanged nodes. */
export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) {
    el.textContent = text;
  }
}

/** A button that does not submit, does not bubble its click, and calls `onClick`. */
export function button(className: string, label: string, onClick: () => void, title = ''): HTMLButtonElement {
  const el = h('button', { class: `nbtasks-button ${className}`, text: label, title, attrs: { type: 'button' } });
  el.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return el;
}
