// The lazy chunk's entry (see lazyTools.ts): the thread's members & settings panel, the search
// page and the import / export page.
export { ThreadTools } from './panels/threadTools';
export { SearchPage } from './panels/search';
export { DataPage } from './panels/data';
